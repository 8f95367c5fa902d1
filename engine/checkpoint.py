"""Where conversation checkpoints live: a SQLite file, or Postgres to share threads.

SQLite (the default, `data_dir/checkpoints.sqlite`) needs nothing and suits one process.
Several bot processes serving the same conversations need one database they can all
reach, so a `postgresql://` (or `postgres://`) URL selects LangGraph's
`AsyncPostgresSaver` on a connection pool.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeAlias, TypeGuard, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from engine.sqlite_saver import ThreadedSqliteSaver

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_PREFIX = "sqlite:///"

# Serialises `AsyncPostgresSaver.setup()` between processes: its migrations are not safe
# to run concurrently (two fresh processes fail with UniqueViolation/DuplicateTable).
# A fixed key ("membot" in ASCII, then 1); engine/locks.py derives its keys by hashing.
_SETUP_LOCK_KEY = 0x6D656D626F740001
_SETUP_POLL_SECONDS = 0.2


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
    url: str | None, default_path: Path, *, pool_size: int = 10, connect_timeout: float = 10.0
) -> AsyncIterator[BaseCheckpointSaver]:
    """The checkpointer for `url` (see `MEMBOT_CHECKPOINT_URL`), open until exit.

    - `postgresql://` / `postgres://`: `AsyncPostgresSaver` on a pool of up to
      `pool_size` connections; its tables are created or migrated on entry. An
      unreachable server raises `ConnectionError` after `connect_timeout` seconds.
    - `sqlite:///PATH`, a plain path, or None (= `default_path`): `ThreadedSqliteSaver` on
      that file, its directory created if needed (it creates its tables itself).
    """
    if is_postgres_url(url):
        async with open_pool(
            url, max_size=pool_size, name="membot-checkpoints", connect_timeout=connect_timeout
        ) as pool:
            saver = AsyncPostgresSaver(pool)
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
    async with ThreadedSqliteSaver.open(str(path)) as saver:
        yield saver


async def _check_connection(conn: AsyncConnection[DictRow]) -> None:
    """The pool's health check. psycopg_pool's own `check_connection` runs an empty query,
    which with `prepare_threshold=0` is prepared anew on every checkout and never freed:
    the server backend grew ~3 KB per checkout. This one is never prepared."""
    await conn.execute("SELECT 1", prepare=False)


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
