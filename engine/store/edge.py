"""`EdgeStore`: a LangGraph `BaseStore` on the real Qdrant engine, in-process.

The store logic is not rewritten here. `langgraph-store-qdrant` (the Qdrant team's
server store) writes it once as generator *plans* that yield requests; its sync and
async stores only execute them. `EdgeStore` is a third executor: qdrant-client calls
go to an `EdgeClient` over a local `EdgeShard`, embeddings go to the index config's
embedder. So the payload layout, point IDs, filter semantics, TTL handling and
pagination are exactly the server store's, and an embedded install can move to a
Qdrant server by copying points (`membot migrate`, `engine/migrate.py`).

Blocking engine calls run on a small thread pool of the store's own, never on the
event loop; embedding in `abatch` uses the embedder's async API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import qdrant_edge as qe
from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, Op, Result, TTLConfig
from langgraph.store.qdrant import _filters as filters
from langgraph.store.qdrant._plans import (
    Call,
    EmbedDocuments,
    EmbedQueries,
    Gather,
    Plan,
    Request,
    arun,
    call,
    run,
)
from langgraph.store.qdrant.base import (
    _METRICS,
    _PAYLOAD_INDEXES,
    VECTOR_NAME,
    BaseQdrantStore,
    QdrantIndexConfig,
)
from qdrant_client import models

from engine.store import edge_models as convert
from engine.store.edge_client import EdgeClient
from engine.store.hybrid import (
    LEXICAL_VECTOR,
    HybridSearchMixin,
    Lexical,
    hybrid_config,
    keyword_indexes,
    text_index,
    text_path,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_META_FILE = "membot_store.json"
# A store without an index config still needs one vector in an Edge shard. Items
# then carry no vectors at all, as in the server store's collections.
_PLACEHOLDER_VECTOR = "_none"
MEMORY = ":memory:"


class EdgeStore(HybridSearchMixin, BaseStore, BaseQdrantStore):
    """Long-term memory store on an embedded Qdrant Edge shard.

    Open with `EdgeStore.open(path, index=..., ttl=...)`; `":memory:"` gives a
    throw-away shard in a temporary directory. Close (or use as a context manager)
    to flush to disk.
    """

    supports_ttl = True

    def __init__(
        self,
        shard: qe.EdgeShard,
        *,
        path: Path,
        index: QdrantIndexConfig | None = None,
        ttl: TTLConfig | None = None,
        temporary: bool = False,
        max_workers: int = 4,
        lexical: Lexical = "sparse",
    ) -> None:
        super().__init__()
        self._init_config(collection_name=str(path), index=index, ttl=ttl)
        self.lexical = lexical
        self.path = path
        self.client = EdgeClient(shard)
        self._shard = shard
        self._temporary = temporary
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="edge-store")
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        index: QdrantIndexConfig | None = None,
        ttl: TTLConfig | None = None,
    ) -> EdgeStore:
        """Create the shard at `path`, or reopen it, checking it fits `index`."""
        temporary = str(path) == MEMORY
        where = _temporary_dir() if temporary else Path(path)
        expected = _layout(index)
        meta_file = where / _META_FILE
        if meta_file.exists():
            found = json.loads(meta_file.read_text())
            _check_layout(where, found, expected)
            shard = qe.EdgeShard.load(str(where))
            # A store made before sparse BM25 vectors ranks words on its text index.
            lexical: Lexical = "sparse" if found.get("lexical") == LEXICAL_VECTOR else "text"
        else:
            lexical = "sparse"
            where.mkdir(parents=True, exist_ok=True)
            shard = qe.EdgeShard.create(str(where), _edge_config(index))
            client = EdgeClient(shard)
            for field_name, schema in _PAYLOAD_INDEXES.items():
                client.create_payload_index(str(where), field_name, schema)
            shard.flush()
            # Written last: a crash before this point leaves no half-made store behind
            # that would be mistaken for a complete one.
            meta_file.write_text(json.dumps(expected))
        if lexical == "text" and hybrid_config(index) is not None:
            logger.warning(
                "the memory store at %s predates BM25 sparse vectors: words are ranked on "
                "its full-text index, which slows down as it grows. Stop the bot and run "
                "`membot reindex` (with MEMBOT_EMBEDDING_PROVIDER set to the store's "
                "embedder) to rebuild it.",
                where,
            )
            _ensure_text_index(shard, index)
        _ensure_keyword_indexes(shard, index)
        return cls(shard, path=where, index=index, ttl=ttl, temporary=temporary, lexical=lexical)

    def close(self) -> None:
        """Flush and release the shard. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pool.shutdown(wait=True)
        self._shard.flush()
        self._shard.close()
        if self._temporary:
            shutil.rmtree(self.path, ignore_errors=True)

    def flush(self) -> None:
        self._shard.flush()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> EdgeStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.close)

    # -- plan execution --------------------------------------------------------------

    def _execute(self, request: Request) -> Any:
        match request:
            case Call(method, args, kwargs):
                return getattr(self.client, method)(*args, **kwargs)
            case Gather(plans):
                return [run(plan, self._execute) for plan in plans]
            case EmbedDocuments(texts):
                return self._embeddings.embed_documents(texts)
            case EmbedQueries(queries):
                return [self._embeddings.embed_query(query) for query in queries]

    async def _aexecute(self, request: Request) -> Any:
        match request:
            case Call(method, args, kwargs):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._pool, lambda: getattr(self.client, method)(*args, **kwargs)
                )
            case Gather(plans):
                return await asyncio.gather(*(arun(plan, self._aexecute) for plan in plans))
            case EmbedDocuments(texts):
                return await self._embeddings.aembed_documents(texts)
            case EmbedQueries(queries):
                return await asyncio.gather(*map(self._embeddings.aembed_query, queries))

    @property
    def _embeddings(self) -> Embeddings:
        return cast(Embeddings, self.embeddings)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EdgeStore is closed")

    # -- BaseStore -------------------------------------------------------------------

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        self._check_open()
        return run(self._batch_plan(ops), self._execute)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        self._check_open()
        return await arun(self._batch_plan(ops), self._aexecute)

    # -- maintenance -----------------------------------------------------------------

    def sweep_ttl(self) -> int:
        """Delete expired items; returns how many there were."""
        self._check_open()
        return run(self._sweep_plan(), self._execute)

    async def asweep_ttl(self) -> int:
        self._check_open()
        return await arun(self._sweep_plan(), self._aexecute)

    def delete_namespace(self, prefix: tuple[str, ...]) -> int:
        """Erase every item under `prefix` in one filtered delete; returns the count."""
        self._check_open()
        return run(_delete_namespace_plan(self.collection_name, prefix), self._execute)

    async def adelete_namespace(self, prefix: tuple[str, ...]) -> int:
        self._check_open()
        return await arun(_delete_namespace_plan(self.collection_name, prefix), self._aexecute)

    def count(self, prefix: tuple[str, ...] = ()) -> int:
        """Items under `prefix` (all items for `()`), expired ones included."""
        self._check_open()
        return self.client.count(self.collection_name, _namespace_filter(prefix)).count

    def optimize(self) -> bool:
        """Build HNSW and merge segments. Blocks for minutes at 100k+ items: call it
        from a maintenance job, not a request path. Filtered per-user searches are
        fast without it."""
        self._check_open()
        return self._shard.optimize()


def _ensure_text_index(shard: qe.EdgeShard, index: QdrantIndexConfig | None) -> None:
    """The BM25 index hybrid search needs. A payload index, not part of the shard's
    layout: a store made before hybrid search gets it on its next open."""
    config = hybrid_config(index)
    if config is None or text_path(config) in shard.info().payload_schema:
        return
    EdgeClient(shard).create_payload_index("", text_path(config), text_index())
    shard.flush()


def _ensure_keyword_indexes(shard: qe.EdgeShard, index: QdrantIndexConfig | None) -> None:
    """The filter and boost fields' indexes (`keyword_indexes`); a store made before them
    gets them on its next open."""
    config = hybrid_config(index)
    if config is None:
        return
    have = shard.info().payload_schema
    missing = {path: s for path, s in keyword_indexes(config).items() if path not in have}
    for path, schema in missing.items():
        EdgeClient(shard).create_payload_index("", path, schema)
    if missing:
        shard.flush()


def _temporary_dir() -> Path:
    # RAM-backed where possible: a throw-away shard gains nothing from fsync, which
    # makes creating one ~30x slower on disk.
    shm = Path("/dev/shm")
    parent = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="edge-store-", dir=parent))


def _namespace_filter(prefix: tuple[str, ...]) -> models.Filter | None:
    if not prefix:
        return None
    _validate_prefix(prefix)
    return filters.every(filters.match("ns_prefixes", filters.encode_ns(prefix)))


def _validate_prefix(prefix: tuple[str, ...]) -> None:
    if not isinstance(prefix, tuple) or not all(isinstance(p, str) and p for p in prefix):
        raise ValueError(f"Namespace prefix must be a tuple of non-empty strings: {prefix!r}")


def _delete_namespace_plan(collection: str, prefix: tuple[str, ...]) -> Plan[int]:
    if not prefix:
        raise ValueError("delete_namespace needs a non-empty prefix")
    flt = _namespace_filter(prefix)
    found = yield from call("count", collection, count_filter=flt, exact=True)
    if found.count:
        selector = models.FilterSelector(filter=flt)
        yield from call("delete", collection, points_selector=selector, wait=True)
    return cast(int, found.count)


def stored_layout(path: str | Path) -> dict[str, Any] | None:
    """The layout (`format`, `dims`, `distance`) the store at `path` was created with, or
    None if no complete store is there. Read before an embedder is chosen: a store made
    before embedders were recorded tells which one built it only by its vector size."""
    meta_file = Path(path) / _META_FILE
    if not meta_file.is_file():
        return None
    return cast(dict[str, Any], json.loads(meta_file.read_text()))


def _layout(index: QdrantIndexConfig | None) -> dict[str, Any]:
    """What must not change between opens of one shard; for a new one, also which sparse
    vector it keeps (a store without `lexical` predates them)."""
    layout: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dims": index["dims"] if index else None,
        "distance": index.get("distance", "cosine") if index else None,
    }
    if hybrid_config(index) is not None:
        layout["lexical"] = LEXICAL_VECTOR
    return layout


class StoreLayoutError(ValueError):
    """The shard on disk was made for other vectors (size, distance) or another format
    than the store is opened with: the embedder changed, so the caller can name the
    setting to fix. A `ValueError`, as it always was, for callers that catch that."""


def _check_layout(path: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    if found.get("format") != FORMAT_VERSION:
        raise StoreLayoutError(
            f"Store at {path} has format {found.get('format')}, expected {FORMAT_VERSION}."
        )
    if found["dims"] is None and expected["dims"] is not None:
        raise StoreLayoutError(
            f"Store at {path} was created without an index config; semantic search needs "
            "a new store (or a migration)."
        )
    if expected["dims"] is not None and (found["dims"], found["distance"]) != (
        expected["dims"],
        expected["distance"],
    ):
        raise StoreLayoutError(
            f"Store at {path} holds {found['dims']}-dim {found['distance']} vectors, but the "
            f"index config asks for {expected['dims']}-dim {expected['distance']}. Use a new "
            "data directory or the embedder the store was built with."
        )


def _edge_config(index: QdrantIndexConfig | None) -> qe.EdgeConfig:
    if not index:
        placeholder = qe.EdgeVectorParams(size=1, distance=qe.Distance.Cosine)
        return qe.EdgeConfig(vectors={_PLACEHOLDER_VECTOR: placeholder})
    metric = _METRICS[index.get("distance", "cosine")]
    vector = qe.EdgeVectorParams(
        size=index["dims"],
        distance=convert.distance(metric.distance),
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
    )
    sparse = None
    if hybrid_config(index) is not None:
        sparse = {LEXICAL_VECTOR: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    return qe.EdgeConfig(vectors={VECTOR_NAME: vector}, sparse_vectors=sparse)
