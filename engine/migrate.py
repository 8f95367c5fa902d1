"""`membot migrate`: move an embedded install's data to the server backends.

Memories: `EdgeStore` runs langgraph-store-qdrant's own plans on a Qdrant Edge shard, so its
points (ids, payload, named multivector) are exactly the points `AsyncQdrantStore` keeps in a
server collection. They are copied as points, page by page with their vectors: nothing is
re-embedded, so 10,000 memories take seconds and an OpenAI-embedded store costs nothing to
move. Memory history records (unembedded items) travel the same way.

Checkpoints: every thread of the SQLite checkpointer is replayed, oldest checkpoint first,
into the target saver with `aput` (same checkpoint ids and parents) and `aput_writes` (the
pending writes), so the target's latest state of each thread is the source's.

The source is only read: the shard is scrolled and counted, the SQLite file is opened
read-only (`mode=ro`). Both copies are verified (counts, every id present, payloads and the
latest state of every thread identical) before the command tells you what to switch over.
Stop the bot first: the embedded shard cannot be opened while it runs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import aiosqlite
import qdrant_edge as qe
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.qdrant import AsyncQdrantStore
from langgraph.store.qdrant.base import VECTOR_NAME
from psycopg.conninfo import conninfo_to_dict
from qdrant_client import models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from engine.bot import CHECKPOINT_FILE
from engine.checkpoint import describe_dsn, is_postgres_url, open_checkpointer, sqlite_path
from engine.settings import Settings
from engine.store.edge import EdgeStore
from engine.store.hybrid import LEXICAL_VECTOR, HybridConfig, HybridSearchMixin, with_words

__all__ = [
    "MigrationError",
    "MigrationReport",
    "migrate",
    "migrate_checkpoints",
    "migrate_memories",
    "open_sqlite_readonly",
    "run_command",
]

STORE_META = "membot_store.json"  # written by EdgeStore.open once a shard is complete

PAGE = 256  # points per scroll page and per retrieve
_MAX_REQUEST_BYTES = 8 * 1024 * 1024  # an upsert request stays well under Qdrant's 32 MiB
_BYTES_PER_FLOAT = 24  # upper bound of one vector component as JSON
_THREAD_CONCURRENCY = 8  # threads replayed at once into the target saver


class MigrationError(Exception):
    """The migration was refused (nothing written) or cannot proceed; the message says why."""


@dataclass
class MigrationReport:
    what: str  # "memories" or "checkpoints"
    source_count: int  # points in the shard, or threads in the checkpointer
    copied: int
    verified: bool
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        status = "verified" if self.verified else "VERIFICATION FAILED"
        unit = "point" if self.what == "memories" else "thread"
        unit += "" if self.source_count == 1 else "s"
        text = (
            f"{self.what}: {self.source_count:,} {unit} in the source, "
            f"{self.copied:,} copied, {status}"
        )
        return text + (f" ({'; '.join(self.notes)})" if self.notes else "")


# -- memories ----------------------------------------------------------------------------


async def migrate_memories(
    source: EdgeStore,
    target: AsyncQdrantStore,
    *,
    collection_options: Mapping[str, Any] | None = None,
) -> MigrationReport:
    """Copy every point of `source`'s shard into `target`'s collection, then verify.

    The target collection is created (`target.setup(**collection_options)`) if needed. A
    target that already holds points is accepted only if it already has every source point
    with an identical payload (a finished earlier run): then nothing is copied. Anything
    else is refused before the first write. Raises `MigrationError` on refusal.
    """
    dims = _source_dims(source)
    await _check_target(target, dims, collection_options or {})
    shard = source.client.shard
    name = target.collection_name
    source_count = await asyncio.to_thread(count_points, shard)
    already = (await target.client.count(name, exact=True)).count
    if already:
        seen, missing, differing, _ = await _compare(shard, target)
        if missing or differing or seen != source_count:
            raise MigrationError(
                f"the target collection {name!r} already holds {already:,} points, and "
                f"{missing:,} of the source's {source_count:,} are missing there and "
                f"{differing:,} differ. Nothing was copied. Migrate into a new collection "
                "(MEMBOT_QDRANT_COLLECTION) or delete this one first."
            )
        extra = already - source_count
        return MigrationReport(
            "memories",
            source_count,
            0,
            True,
            [
                f"the target already held all {source_count:,} points with identical "
                "payloads (an earlier run); nothing copied"
                + (f"; it also holds {extra:,} other points" if extra else "")
            ],
        )

    started = time.monotonic()
    copied = 0
    words = target.words_config() if isinstance(target, HybridSearchMixin) else None
    async for records in point_pages(shard, with_vector=True):
        points = [_point(record, dims, words) for record in records]
        for batch in _pack(points):
            await target.client.upsert(name, points=batch, wait=True)
        copied += len(points)
    elapsed = time.monotonic() - started

    seen, missing, differing, namespaces = await _compare(shard, target)
    after = (await target.client.count(name, exact=True)).count
    verified = seen == source_count == copied == after and not missing and not differing
    notes = [", ".join(f"{ns} {n:,}" for ns, n in sorted(namespaces.items())) or "empty"]
    notes.append(f"copied in {elapsed:.1f} s ({copied / max(elapsed, 1e-9):,.0f} points/s)")
    if not verified:
        notes.append(
            f"scrolled {seen:,}, target holds {after:,}, {missing:,} missing, "
            f"{differing:,} with a different payload"
        )
    return MigrationReport("memories", source_count, copied, verified, notes)


def _source_dims(source: EdgeStore) -> int:
    if not source.index_config:
        raise MigrationError(
            "the embedded store has no index config (no vectors); membot always embeds its "
            "memories, so this is not a membot store"
        )
    return int(source.index_config["dims"])


async def _check_target(
    target: AsyncQdrantStore, dims: int, collection_options: Mapping[str, Any]
) -> None:
    """The target must take `dims`-dim vectors: checked before anything is created, and
    again on the collection the server actually has."""
    name = target.collection_name
    wanted = (target.index_config or {}).get("dims")
    if wanted != dims:
        raise MigrationError(
            f"vector size mismatch: the embedded store holds {dims}-dim vectors, but the "
            f"target store is configured for {wanted}-dim vectors. Use the embedder the "
            "embedded store was built with (MEMBOT_EMBEDDING_PROVIDER)."
        )
    try:
        await target.setup(**collection_options)
    except ValueError as err:  # an existing collection that does not fit
        raise MigrationError(
            f"the target collection {name!r} cannot take these points: {err}"
        ) from err
    info = await target.client.get_collection(name)
    vectors = info.config.params.vectors
    params = vectors.get(VECTOR_NAME) if isinstance(vectors, dict) else None
    if params is None or params.size != dims:
        size = None if params is None else params.size
        raise MigrationError(
            f"vector size mismatch: the embedded store holds {dims}-dim vectors, but the "
            f"target collection {name!r} has {size}-dim {VECTOR_NAME!r} vectors"
        )


def count_points(shard: qe.EdgeShard) -> int:
    return shard.count(qe.CountRequest(exact=True))


async def point_pages(shard: qe.EdgeShard, *, with_vector: bool) -> AsyncIterator[list[qe.Record]]:
    """All points of the shard in id order, `PAGE` at a time, read on a worker thread."""
    offset = None
    while True:
        request = qe.ScrollRequest(
            offset=offset, limit=PAGE, with_payload=True, with_vector=with_vector
        )
        records, offset = await asyncio.to_thread(shard.scroll, request)
        if records:
            yield records
        if offset is None:
            return


def _point(record: qe.Record, dims: int, words: HybridConfig | None) -> models.PointStruct:
    """The point for the target: its dense vectors as they are, and, for a target that
    keeps BM25 vectors (`words`), those made again from its text, so a source that ranked
    words on a text index arrives with them too."""
    vectors = dict(record.vector or {})
    vectors.pop(LEXICAL_VECTOR, None)
    unknown = set(vectors) - {VECTOR_NAME}
    sizes = {len(v) for v in vectors.get(VECTOR_NAME, [])}
    if unknown or sizes - {dims}:
        raise MigrationError(
            f"point {record.id} does not fit the store layout (vectors {sorted(vectors)}, "
            f"sizes {sorted(sizes)}, expected {VECTOR_NAME!r} of {dims} dims)"
        )
    point = models.PointStruct(id=str(record.id), vector=vectors, payload=record.payload or {})
    return with_words(point, words) if words is not None else point


def _pack(points: Sequence[models.PointStruct]) -> list[list[models.PointStruct]]:
    """Upsert requests bounded in size (an item may carry several vectors)."""
    batches: list[list[models.PointStruct]] = []
    used = 0
    for p in points:
        vectors = p.vector.get(VECTOR_NAME, []) if isinstance(p.vector, dict) else []
        size = len(json.dumps(p.payload)) + 256 + _BYTES_PER_FLOAT * sum(map(len, vectors))
        if not batches or used + size > _MAX_REQUEST_BYTES:
            batches.append([])
            used = 0
        batches[-1].append(p)
        used += size
    return batches


def comparable_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    # Items are read from `value_json`, the exact copy; a server may change a float in
    # `value` (the filterable copy) by one unit in the last place.
    return {k: v for k, v in payload.items() if k != "value"}


async def _compare(
    shard: qe.EdgeShard, target: AsyncQdrantStore
) -> tuple[int, int, int, Counter[str]]:
    """Scroll the source again and look every point up in the target: (points seen,
    missing in the target, present with another payload, points per top namespace)."""
    seen = missing = differing = 0
    namespaces: Counter[str] = Counter()
    async for records in point_pages(shard, with_vector=False):
        ids = [str(r.id) for r in records]
        found = await target.client.retrieve(
            target.collection_name, ids=ids, with_payload=True, with_vectors=False
        )
        payloads = {str(p.id): p.payload or {} for p in found}
        for pid, record in zip(ids, records, strict=True):
            payload = record.payload or {}
            namespaces[(payload.get("namespace") or ["?"])[0]] += 1
            if pid not in payloads:
                missing += 1
            elif comparable_payload(payloads[pid]) != comparable_payload(payload):
                differing += 1
        seen += len(records)
    return seen, missing, differing, namespaces


# -- checkpoints -------------------------------------------------------------------------

ThreadKey = tuple[str, str]  # (thread_id, checkpoint_ns)


async def migrate_checkpoints(
    source: BaseCheckpointSaver, target: BaseCheckpointSaver
) -> MigrationReport:
    """Replay every thread of `source` into `target`, then verify the latest states.

    A thread the target already has is refused (before anything is written) unless its
    latest checkpoint is one of the source's, i.e. an earlier run of this migration:
    replaying is idempotent. Raises `MigrationError` on refusal.
    """
    threads: dict[ThreadKey, set[str]] = {}
    async for saved in source.alist(None):
        threads.setdefault(_key(saved), set()).add(saved.checkpoint["id"])

    conflicts = []
    for key, ids in threads.items():
        there = await target.aget_tuple(_config(key))
        if there is not None and there.checkpoint["id"] not in ids:
            conflicts.append(key[0])
    if conflicts:
        listed = ", ".join(map(repr, sorted(conflicts)[:5]))
        raise MigrationError(
            f"the target already has {len(conflicts):,} of these threads with other "
            f"conversations ({listed}{', ...' if len(conflicts) > 5 else ''}). Nothing was "
            "copied. Migrate into an empty database."
        )

    started = time.monotonic()
    limit = asyncio.Semaphore(_THREAD_CONCURRENCY)

    async def copy(key: ThreadKey) -> tuple[int, int]:
        async with limit:
            return await _copy_thread(source, target, key)

    done = await asyncio.gather(*(copy(key) for key in threads))
    checkpoints = sum(c for c, _ in done)
    writes = sum(w for _, w in done)
    elapsed = time.monotonic() - started

    bad = [
        key[0] for key, ids in threads.items() if not await _same_thread(source, target, key, ids)
    ]
    notes = [f"{checkpoints:,} checkpoints, {writes:,} pending writes, {elapsed:.1f} s"]
    if bad:
        notes.append(f"{len(bad):,} threads differ in the target, e.g. {bad[0]!r}")
    return MigrationReport("checkpoints", len(threads), len(done), not bad, notes)


def _key(saved: CheckpointTuple) -> ThreadKey:
    configurable = saved.config["configurable"]
    return configurable["thread_id"], configurable.get("checkpoint_ns", "")


def _config(key: ThreadKey, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": key[0], "checkpoint_ns": key[1]}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def _history(saver: BaseCheckpointSaver, key: ThreadKey) -> list[CheckpointTuple]:
    """A thread's checkpoints, oldest first (checkpoint ids are time-ordered uuid6)."""
    found = [saved async for saved in saver.alist(_config(key)) if _key(saved) == key]
    return sorted(found, key=lambda saved: saved.checkpoint["id"])


async def _copy_thread(
    source: BaseCheckpointSaver, target: BaseCheckpointSaver, key: ThreadKey
) -> tuple[int, int]:
    checkpoints = await _history(source, key)
    writes = 0
    for saved in checkpoints:
        parent = (saved.parent_config or {}).get("configurable", {}).get("checkpoint_id")
        written = await target.aput(
            _config(key, parent),
            saved.checkpoint,
            saved.metadata,
            saved.checkpoint["channel_versions"],
        )
        for task_id, task_writes in _by_task(saved.pending_writes or []):
            await target.aput_writes(written, task_writes, task_id)
            writes += len(task_writes)
    return len(checkpoints), writes


def _by_task(pending: Iterable[tuple[str, str, Any]]) -> list[tuple[str, list[tuple[str, Any]]]]:
    tasks: dict[str, list[tuple[str, Any]]] = {}
    for task_id, channel, value in pending:
        tasks.setdefault(task_id, []).append((channel, value))
    return list(tasks.items())


async def _same_thread(
    source: BaseCheckpointSaver, target: BaseCheckpointSaver, key: ThreadKey, ids: set[str]
) -> bool:
    mine = await source.aget_tuple(_config(key))
    theirs = await target.aget_tuple(_config(key))
    if mine is None or theirs is None:
        return False
    if theirs.checkpoint["id"] != mine.checkpoint["id"]:
        return False
    if theirs.checkpoint["channel_values"] != mine.checkpoint["channel_values"]:
        return False
    copied = {saved.checkpoint["id"] async for saved in target.alist(_config(key))}
    return ids <= copied


@asynccontextmanager
async def open_sqlite_readonly(path: Path) -> AsyncIterator[AsyncSqliteSaver]:
    """An `AsyncSqliteSaver` that cannot write the file (SQLite's `mode=ro`); the saver
    supports read-only databases. Refuses a missing file instead of creating one."""
    async with aiosqlite.connect(_readonly_uri(path), uri=True) as conn:
        yield AsyncSqliteSaver(conn)


def _readonly_uri(path: Path) -> str:
    if not path.is_file():
        raise MigrationError(f"no conversation checkpoints at {path}")
    return f"{path.resolve().as_uri()}?mode=ro"


# -- the command -------------------------------------------------------------------------


async def migrate(
    settings: Settings,
    *,
    qdrant_url: str,
    qdrant_api_key: str | None = None,
    postgres_dsn: str | None = None,
) -> list[MigrationReport]:
    """Copy the embedded install described by `settings` to a Qdrant server (collection
    `settings.qdrant_collection`) and, with `postgres_dsn`, its conversations to Postgres.
    Everything that can be checked before writing is checked first."""
    from engine.embeddings import make_embeddings
    from engine.store.factory import index_config
    from engine.store.server import HybridQdrantStore

    store_path = settings.store_path
    checkpoints_path = _preflight(settings, postgres_dsn)
    if qdrant_api_key is None and settings.qdrant_api_key is not None:
        qdrant_api_key = settings.qdrant_api_key.get_secret_value()
    embeddings, dims = make_embeddings(settings)
    index = index_config(embeddings, dims)
    try:
        source = await asyncio.to_thread(EdgeStore.open, store_path, index=index)
    except ValueError as err:  # the shard's vector size is not the configured embedder's
        raise MigrationError(str(err)) from err
    except Exception as err:
        if "WouldBlock" in str(err):
            raise MigrationError(
                f"the embedded store at {store_path} is open in another process: stop the "
                "bot, then migrate"
            ) from err
        raise
    reports = []
    async with source:
        # The server store the bot will use, so the target gets the hybrid search's
        # full-text index too; episodes, facts and history are points like any other.
        async with HybridQdrantStore.from_url(
            qdrant_url,
            api_key=qdrant_api_key,
            collection_name=settings.qdrant_collection,
            index=index,
        ) as target:
            reports.append(
                await migrate_memories(
                    source, target, collection_options=settings.qdrant_collection_options()
                )
            )
    if postgres_dsn is not None and checkpoints_path is not None:
        async with (
            open_sqlite_readonly(checkpoints_path) as saver,
            # Every checkpoint is copied and verified as it is: the target must not prune
            # a thread's older ones while they are replayed into it.
            open_checkpointer(
                postgres_dsn, checkpoints_path, pool_size=_THREAD_CONCURRENCY, keep_latest=False
            ) as pg,
        ):
            reports.append(await migrate_checkpoints(saver, pg))
    return reports


def _preflight(settings: Settings, postgres_dsn: str | None) -> Path | None:
    """Refuse what cannot work before anything is opened; the SQLite file to copy."""
    if settings.qdrant_url:
        raise MigrationError(
            f"this install already keeps its memories on a Qdrant server "
            f"(MEMBOT_QDRANT_URL={_redact_url(settings.qdrant_url)}); migrate copies an "
            "embedded install. Unset MEMBOT_QDRANT_URL to migrate the data in "
            f"{settings.data_dir}."
        )
    if not (settings.store_path / STORE_META).is_file():
        # Checked here: EdgeStore.open would create an empty store.
        raise MigrationError(f"no embedded memory store at {settings.store_path} (MEMBOT_DATA_DIR)")
    if postgres_dsn is None:
        return None
    if not is_postgres_url(postgres_dsn):
        raise MigrationError("--to-postgres needs a postgresql:// or postgres:// URL")
    if is_postgres_url(settings.checkpoint_url):
        raise MigrationError(
            "conversations are already in Postgres (MEMBOT_CHECKPOINT_URL is set to "
            f"{describe_dsn(settings.checkpoint_url)}); leave out --to-postgres"
        )
    path = sqlite_path(settings.checkpoint_url, settings.data_dir / CHECKPOINT_FILE)
    if not path.is_file():
        raise MigrationError(f"no conversation checkpoints at {path}")
    return path


async def run_command(
    settings: Settings,
    *,
    qdrant_url: str,
    qdrant_api_key: str | None = None,
    postgres_dsn: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`membot migrate`: one line per report, then what to set. Exit status 1 if the
    migration was refused or a verification failed."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        reports = await migrate(
            settings,
            qdrant_url=qdrant_url,
            qdrant_api_key=qdrant_api_key,
            postgres_dsn=postgres_dsn,
        )
    except (MigrationError, ConnectionError) as error:
        print(f"membot migrate: {error}", file=err)
        return 1
    except (ResponseHandlingException, UnexpectedResponse) as error:
        print(f"membot migrate: Qdrant at {_redact_url(qdrant_url)} failed: {error}", file=err)
        return 1
    for report in reports:
        print(report.line(), file=out)
    if not all(report.verified for report in reports):
        print(
            "membot migrate: verification failed; keep running on the embedded data "
            f"(untouched in {settings.data_dir}) and run the migration again.",
            file=err,
        )
        return 1
    print(
        f"\nDone; the embedded data in {settings.data_dir} is untouched. "
        "To switch over, set (environment or .env) and restart:",
        file=out,
    )
    print(f"  MEMBOT_QDRANT_URL={_redact_url(qdrant_url)}", file=out)
    if qdrant_api_key or settings.qdrant_api_key:
        print("  MEMBOT_QDRANT_API_KEY=<the API key you migrated with>", file=out)
    print(f"  MEMBOT_QDRANT_COLLECTION={settings.qdrant_collection}", file=out)
    if postgres_dsn is not None:
        print(f"  MEMBOT_CHECKPOINT_URL={_printable_dsn(postgres_dsn)}", file=out)
    return 0


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _printable_dsn(dsn: str) -> str:
    """The DSN itself when it holds no password, else a placeholder naming the server."""
    try:
        has_password = bool(conninfo_to_dict(dsn).get("password"))
    except Exception:
        has_password = True
    if not has_password:
        return dsn
    return f"<your --to-postgres URL>  (Postgres at {describe_dsn(dsn)}; password not shown)"
