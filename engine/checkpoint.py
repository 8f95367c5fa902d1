"""Where conversation checkpoints live: a SQLite file, or Postgres to share threads.

SQLite (the default, `data_dir/checkpoints.sqlite`) needs nothing and suits one process.
Several bot processes serving the same conversations need one database they can all
reach, so a `postgresql://` (or `postgres://`) URL selects LangGraph's
`AsyncPostgresSaver` on a connection pool.

Either way a thread keeps only its latest checkpoint (`keep_latest`, on by default): that
is all the bot reads (the workflow's `previous`, `MemoryBot.thread()`; nothing lists a
thread's history), while LangGraph keeps one per turn (60 turns: 60 rows, 1.45 MB). SQLite
deletes the older ones in the save's own transaction (engine/sqlite_saver.py), Postgres
right after it with one statement (`KeepLatestPostgresSaver`). `idle_threads` finds
threads to expire with one query on the checkpoint ids, reading no checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol, TypeAlias, TypeGuard, cast, runtime_checkable

import aiosqlite
import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from engine.sqlite_saver import ThreadedSqliteSaver

logger = logging.getLogger(__name__)

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_PREFIX = "sqlite:///"

# Serialises `AsyncPostgresSaver.setup()` between processes: its migrations are not safe
# to run concurrently (two fresh processes fail with UniqueViolation/DuplicateTable).
# A fixed key ("membot" in ASCII, then 1); engine/locks.py derives its keys by hashing.
_SETUP_LOCK_KEY = 0x6D656D626F740001
_SETUP_POLL_SECONDS = 0.2

# 100-ns intervals from the uuid epoch (1582-10-15) to the Unix epoch, as in uuid6.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Everything of a thread and namespace older than the checkpoint just saved, in one
# statement (one snapshot, atomic). Ids are uuid6, in time order as text, as the savers
# assume for "latest". A blob goes only if a deleted checkpoint referenced its version and no
# remaining one does (as in LangGraph's `aprune`): a save in flight for a newer checkpoint
# references new versions or the kept checkpoint's, so its blobs stay. The kept
# checkpoint's parent id is left dangling, as on SQLite; only forking from it would read it.
_KEEP_LATEST_SQL = """
WITH gone AS (
    DELETE FROM checkpoints
    WHERE thread_id = %(thread_id)s AND checkpoint_ns = %(ns)s AND checkpoint_id < %(id)s
    RETURNING checkpoint -> 'channel_versions' AS versions
), writes AS (
    DELETE FROM checkpoint_writes
    WHERE thread_id = %(thread_id)s AND checkpoint_ns = %(ns)s AND checkpoint_id < %(id)s
), freed AS (
    SELECT v.key AS channel, v.value AS version FROM gone, jsonb_each_text(gone.versions) v
    EXCEPT
    SELECT v.key, v.value
    FROM checkpoints c, jsonb_each_text(c.checkpoint -> 'channel_versions') v
    WHERE c.thread_id = %(thread_id)s AND c.checkpoint_ns = %(ns)s AND c.checkpoint_id >= %(id)s
)
DELETE FROM checkpoint_blobs b USING freed
WHERE b.thread_id = %(thread_id)s AND b.checkpoint_ns = %(ns)s
AND b.channel = freed.channel AND b.version = freed.version
"""

# The Postgres twin of engine.sqlite_saver's query: served by the primary key.
_IDLE_THREADS_SQL = """
SELECT thread_id FROM checkpoints GROUP BY thread_id HAVING max(checkpoint_id) < %s
"""


@runtime_checkable
class FindsIdleThreads(Protocol):
    """A saver that can list threads whose newest checkpoint id sorts before a bound."""

    async def aidle_threads(self, before_id: str) -> list[str]: ...


class KeepLatestPostgresSaver(AsyncPostgresSaver):
    """`AsyncPostgresSaver` that keeps only each thread's latest checkpoint.

    After each save one statement (`_KEEP_LATEST_SQL`) deletes the older checkpoints of
    the thread and namespace, their pending writes, and the blobs (channel values, stored
    once per version) that only they referenced. LangGraph's own `aprune(strategy=
    "keep_latest")` leaves the same rows (tests/test_checkpoint_bounds.py compares them),
    but it is a batch job: ~12 statements in a REPEATABLE READ transaction, checking for
    DeltaChannels and subgraphs this workflow does not have. Measured per save (median,
    local server): 2.2 ms alone, 3.6 ms with this statement (one round trip), 10.3 ms
    with `aprune`. It runs after the save, not in it (the save is LangGraph's pipelined
    statements): a failed prune (say, a dropped connection) must not fail a turn whose
    checkpoint is saved; the next save prunes again, as it removes a pending write that
    a background save (`durability="async"`) landed after the prune. The workflow has one
    namespace and no DeltaChannel (which rebuilds values from older checkpoints; `aprune`
    refuses such threads): a workflow with one needs `aprune` instead. `keep_latest =
    False` keeps every checkpoint (e.g. to copy whole histories).
    """

    keep_latest: bool = True

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = await super().aput(config, checkpoint, metadata, new_versions)
        if self.keep_latest:
            where = saved["configurable"]
            try:
                async with self._cursor() as cur:
                    await cur.execute(
                        _KEEP_LATEST_SQL,
                        {
                            "thread_id": where["thread_id"],
                            "ns": where["checkpoint_ns"],
                            "id": where["checkpoint_id"],
                        },
                    )
            except psycopg.Error as err:
                logger.warning(
                    "older checkpoints of thread %s not pruned (the next save retries): %s",
                    where["thread_id"],
                    type(err).__name__,
                )
        return saved

    async def aidle_threads(self, before_id: str) -> list[str]:
        """Threads whose newest checkpoint id sorts before `before_id`."""
        async with self._cursor() as cur:
            await cur.execute(_IDLE_THREADS_SQL, (before_id,))
            return [str(row["thread_id"]) for row in await cur.fetchall()]


def checkpoint_id_at(when: datetime) -> str:
    """The smallest checkpoint id LangGraph could have made at `when`.

    Its ids are uuid6 (`langgraph.checkpoint.base.id`): the 60-bit timestamp comes first,
    most significant bits first, so ids sort as text in time order; the savers rely on
    that for "latest" (`ORDER BY checkpoint_id DESC`). Every checkpoint saved before
    `when` has a smaller id than this one (clock sequence and node zero). `when` must
    carry a timezone.
    """
    micros = (when - _UNIX_EPOCH) // timedelta(microseconds=1)  # exact, unlike a float
    stamp = micros * 10 + _UUID_EPOCH_OFFSET
    value = ((stamp >> 12) & 0xFFFF_FFFF_FFFF) << 80 | 0x6 << 76 | (stamp & 0x0FFF) << 64
    value |= 0x8 << 60  # the RFC 4122 variant, as uuid6 sets it
    return str(uuid.UUID(int=value))


async def idle_threads(saver: BaseCheckpointSaver, before: datetime) -> list[str]:
    """Threads whose newest checkpoint was saved before `before`.

    SQLite and Postgres answer with one query on the checkpoint ids (see
    `checkpoint_id_at`) and read no checkpoint. Any other saver is walked with `alist`,
    streaming: memory grows with the number of threads, not of checkpoints.
    """
    if isinstance(saver, FindsIdleThreads):
        return await saver.aidle_threads(checkpoint_id_at(before))
    newest: dict[str, datetime] = {}
    async for saved in saver.alist(None):
        thread_id = str(saved.config["configurable"]["thread_id"])
        written = datetime.fromisoformat(saved.checkpoint["ts"])
        if thread_id not in newest or written > newest[thread_id]:
            newest[thread_id] = written
    return [thread_id for thread_id, written in newest.items() if written < before]


def is_postgres_url(url: str | None) -> TypeGuard[str]:
    """True for `postgresql://...` and `postgres://...` (both libpq spellings)."""
    return url is not None and url.lower().startswith(POSTGRES_SCHEMES)


def sqlite_path(url: str | None, default_path: Path) -> Path:
    """The SQLite file for `url`: `sqlite:///relative.db`, `sqlite:////abs.db` (as in
    SQLAlchemy), a plain path, or `default_path` when unset. Other schemes are refused
    rather than read as odd file names."""
    if not url:
        return default_path
    if url.startswith(SQLITE_PREFIX):
        path = url.removeprefix(SQLITE_PREFIX)
        if not path:
            raise ValueError("a sqlite:/// checkpoint URL needs a file path after the slashes")
        return Path(path)
    if "://" in url:
        scheme = url.split("://", 1)[0]
        # Only the scheme: the rest may hold a password.
        raise ValueError(
            f"unsupported checkpoint URL scheme {scheme!r}: "
            "use postgresql://..., sqlite:///PATH or a file path"
        )
    return Path(url)


def describe_dsn(dsn: str) -> str:
    """`host:port/dbname` for messages and logs, never the password."""
    try:
        info = conninfo_to_dict(dsn)
    except Exception:
        return "<unparsable Postgres URL>"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


@asynccontextmanager
async def open_pool(
    dsn: str,
    *,
    max_size: int,
    name: str,
    connect_timeout: float = 10.0,
    wait_timeout: float = 30.0,
) -> AsyncIterator[Pool]:
    """An open `AsyncConnectionPool` with the connection settings `AsyncPostgresSaver`
    documents and relies on: autocommit (its migrations run `CREATE INDEX CONCURRENTLY`,
    which refuses to run in a transaction), `prepare_threshold=0` and `dict_row` rows (it
    reads columns by name). Each checked-out connection belongs to one coroutine, so
    several coroutines can work at once. Connections are checked before use, so one
    broken by a database restart is replaced instead of failing a turn. Fails after
    `connect_timeout` seconds with the server named (never the password)."""
    pool: Pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=max_size,
        name=name,
        timeout=wait_timeout,  # how long a caller may wait for a free connection
        open=False,
        check=_check_connection,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    try:
        await pool.open(wait=True, timeout=connect_timeout)
    except PoolTimeout as err:
        await pool.close()
        raise ConnectionError(
            f"cannot connect to Postgres at {describe_dsn(dsn)} within {connect_timeout:g}s"
        ) from err
    try:
        yield pool
    finally:
        await pool.close()


@asynccontextmanager
async def open_checkpointer(
    url: str | None,
    default_path: Path,
    *,
    pool_size: int = 10,
    connect_timeout: float = 10.0,
    keep_latest: bool = True,
) -> AsyncIterator[BaseCheckpointSaver]:
    """The checkpointer for `url` (see `MEMBOT_CHECKPOINT_URL`), open until exit.

    - `postgresql://` / `postgres://`: `KeepLatestPostgresSaver` (LangGraph's
      `AsyncPostgresSaver`, pruning after each save) on a pool of up to `pool_size`
      connections; its tables are created or migrated on entry. An unreachable server
      raises `ConnectionError` after `connect_timeout` seconds.
    - `sqlite:///PATH`, a plain path, or None (= `default_path`): `ThreadedSqliteSaver` on
      that file, its directory created if needed (it creates its tables itself).

    With `keep_latest` (the default) each save deletes the thread's older checkpoints;
    without it every checkpoint stays (a migration that copies whole histories).
    """
    if is_postgres_url(url):
        async with open_pool(
            url, max_size=pool_size, name="membot-checkpoints", connect_timeout=connect_timeout
        ) as pool:
            saver = KeepLatestPostgresSaver(pool)
            saver.keep_latest = keep_latest
            # The saver wraps every query in one instance-wide asyncio.Lock, even with a
            # pool, so its coroutines would take turns on a single connection
            # (langgraph#7259). With a pool each query gets its own connection and that
            # lock is not needed; a semaphore the size of the pool keeps the bound.
            saver.lock = cast(asyncio.Lock, asyncio.Semaphore(pool_size))
            await _setup_once(url, saver, connect_timeout)
            yield saver
        return
    path = sqlite_path(url, default_path)
    if str(path) != ":memory:":
        path.parent.mkdir(parents=True, exist_ok=True)
    async with ThreadedSqliteSaver.open(str(path), keep_latest=keep_latest) as saver:
        yield saver


async def _check_connection(conn: AsyncConnection[DictRow]) -> None:
    """The pool's health check. psycopg_pool's own `check_connection` runs an empty query,
    which with `prepare_threshold=0` is prepared anew on every checkout and never freed:
    the server backend grew ~3 KB per checkout. This one is never prepared."""
    await conn.execute("SELECT 1", prepare=False)


@asynccontextmanager
async def open_sqlite_file(path: Path, *schema: str) -> AsyncIterator[aiosqlite.Connection]:
    """An aiosqlite connection to `path` (created with its folder), in WAL mode (readers
    never wait for the writer), with the `CREATE … IF NOT EXISTS` statements of `schema`
    run: the embedded journal and inbox each keep a small table this way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        for statement in schema:
            await conn.execute(statement)
        await conn.commit()
        yield conn


async def create_table_once(pool: Pool, ddl: str, *, name: str) -> None:
    """Run a `CREATE TABLE IF NOT EXISTS` that replicas starting together may all run:
    Postgres does not make it safe under concurrency (`UniqueViolation` on pg_type), so it
    runs under a transaction-level advisory lock keyed by the table name."""
    key = int.from_bytes(
        hashlib.blake2b(f"ddl:{name}".encode(), digest_size=8).digest(), "big", signed=True
    )
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
        await conn.execute(ddl)


async def _setup_once(dsn: str, saver: AsyncPostgresSaver, connect_timeout: float = 10.0) -> None:
    """`saver.setup()` while holding a database-wide advisory lock, so processes that
    start together migrate one after another (the later ones find nothing to do).

    The lock lives on a connection of its own, closed at the end (which releases it), so
    the pool may have any size. Waiting polls `pg_try_advisory_lock` instead of blocking
    in `pg_advisory_lock`: a session blocked in that call keeps a snapshot open, and the
    migrations' `CREATE INDEX CONCURRENTLY` waits for every such snapshot, i.e. for the
    very process that holds the lock.
    """
    conn = await AsyncConnection.connect(
        dsn, autocommit=True, row_factory=dict_row, connect_timeout=max(1, int(connect_timeout))
    )
    async with conn:
        while True:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_SETUP_LOCK_KEY,))
            row = await cur.fetchone()
            if row is not None and row["got"]:
                break
            await asyncio.sleep(_SETUP_POLL_SECONDS)
        await saver.setup()
