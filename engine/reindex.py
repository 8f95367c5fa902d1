"""`membot reindex`: re-embed the embedded memory store with another embedder, or rebuild
a store made before BM25 sparse vectors (engine/store/hybrid.py) with the same one.

A store's vectors only mean something to the embedder that made them, so a store records
its embedder (engine/embeddings/record.py) and an explicit `MEMBOT_EMBEDDING_PROVIDER`
that contradicts it is refused. This is the way across that keeps the memories: every
item (memories, episodes, history; all namespaces) is read from the shard and written
through the ordinary store API into a new store at `<data_dir>/qdrant.reindex`, built
with the new embedder and `index_config` (so the hybrid search's BM25 index is there as
on any open). The `text` field is embedded again; key, namespace and value are written
as they were, and the timestamps (`created_at`, `updated_at`, TTL expiry) are set back
to the source's, because recall ranks by them. Every item is then checked against its
source (same payload, same number of vectors) and counted per namespace.

Only then are the directories swapped: the old store becomes
`<data_dir>/qdrant.<old provider>-<UTC time>.bak` (kept, never deleted) and the new one
`<data_dir>/qdrant`, with its embedder record. Anything failing before the swap removes
the partial new store and leaves the old one as it was. Stop the bot first: the shard
cannot be opened while it runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from langchain_core.embeddings import Embeddings
from langgraph.store.base import PutOp
from langgraph.store.qdrant.base import VECTOR_NAME
from qdrant_edge import UpdateOperation

from engine.embeddings import build_embeddings
from engine.embeddings.cache import CachedEmbeddings
from engine.embeddings.record import EmbedderRecord, identify, read_record, write_record
from engine.errors import ConfigError
from engine.migrate import STORE_META, comparable_payload, count_points, point_pages
from engine.settings import Settings
from engine.store.edge import EdgeStore, stored_layout
from engine.store.factory import index_config

__all__ = ["ReindexError", "ReindexReport", "reindex", "run_command"]

logger = logging.getLogger(__name__)

NEW_DIR = "qdrant.reindex"  # the store being built, next to `qdrant`


class ReindexError(Exception):
    """The reindex cannot run or did not verify; the message says why. The old store is
    untouched whenever this is raised."""


@dataclass
class ReindexReport:
    namespaces: Counter[str]  # items per top-level namespace ("memories", "history", ...)
    seconds: float
    record: EmbedderRecord  # the new store's embedder
    backup: Path  # where the old store now is

    def line(self) -> str:
        total = sum(self.namespaces.values())
        per = ", ".join(f"{ns} {n:,}" for ns, n in sorted(self.namespaces.items())) or "empty"
        return (
            f"reindexed {total:,} items ({per}) with {self.record.describe()} in "
            f"{self.seconds:.1f} s; the old store is kept at {self.backup}"
        )


async def reindex(settings: Settings) -> ReindexReport:
    """Re-embed the embedded store of `settings` with `MEMBOT_EMBEDDING_PROVIDER`, verify,
    and swap it in. Raises `ConfigError` for what the settings must say differently and
    `ReindexError` (or the embedder's own error) for a failure; the old store is then
    untouched and no partial new store is left."""
    old = _preflight(settings)
    store_path = settings.store_path
    new_path = settings.data_dir / NEW_DIR
    # Built directly: `make_embeddings` would refuse it, as it contradicts the store.
    embeddings, dims = build_embeddings(
        settings,
        settings.embedding_provider,
        missing_key="MEMBOT_EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY to re-embed the "
        "memories. Set it.",
    )
    started = time.monotonic()
    try:
        # A run killed before its cleanup left this; it was never swapped in.
        await asyncio.to_thread(shutil.rmtree, new_path, ignore_errors=True)
        try:
            namespaces = await _copy_all(store_path, new_path, embeddings, dims)
            record = identify(embeddings, dims)
            if record is None:  # `build_embeddings` only builds embedders membot ships
                raise ReindexError("the new embedder could not be identified")
            write_record(new_path, record)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, new_path, ignore_errors=True)
            raise
    finally:
        await _close(embeddings)
    backup = await asyncio.to_thread(_swap, store_path, new_path, old)
    return ReindexReport(namespaces, time.monotonic() - started, record, backup)


def _preflight(settings: Settings) -> EmbedderRecord | None:
    """Refuse what cannot or need not run, before anything is opened; the old store's
    embedder (None: a store too old to say, of an unknown vector size)."""
    if settings.qdrant_url:
        raise ConfigError(
            "MEMBOT_QDRANT_URL",
            "membot reindex re-embeds the embedded store, but MEMBOT_QDRANT_URL is set "
            "(server mode). Unset MEMBOT_QDRANT_URL to reindex the store in "
            f"{settings.data_dir}.",
        )
    wanted = settings.embedding_provider
    if wanted == "auto":
        raise ConfigError(
            "MEMBOT_EMBEDDING_PROVIDER",
            "membot reindex needs the embedder to switch to: set MEMBOT_EMBEDDING_PROVIDER "
            "to local or openai (not auto).",
        )
    store_path = settings.store_path
    if not (store_path / STORE_META).is_file():
        half_done = (settings.data_dir / NEW_DIR / STORE_META).is_file()
        raise ReindexError(
            f"no embedded memory store at {store_path} (MEMBOT_DATA_DIR)"
            + (
                f"; {settings.data_dir / NEW_DIR} holds a finished reindex that was not "
                f"swapped in: rename it to {store_path}"
                if half_done
                else ""
            )
        )
    old = read_record(store_path, settings.openai_embedding_dims)
    same = old is not None and old.provider == wanted and _same_embedder(settings, old)
    # A store made before BM25 sparse vectors is rebuilt with the same embedder too.
    if same and (stored_layout(store_path) or {}).get("lexical"):
        raise ConfigError(
            "MEMBOT_EMBEDDING_PROVIDER",
            f"the memory store at {store_path} is already built with {old.describe()} "
            "and BM25 vectors: nothing to reindex. Set MEMBOT_EMBEDDING_PROVIDER to the "
            "other embedder (or MEMBOT_OPENAI_EMBEDDING_MODEL/_DIMS to other ones) to "
            "switch.",
        )
    return old


def _same_embedder(settings: Settings, old: EmbedderRecord) -> bool:
    """Whether the settings name the embedder that built the store: for OpenAI another
    model or vector size is a real switch (an old record without a model counts as the
    configured one)."""
    if old.provider == "local":
        return True
    model_same = old.model is None or old.model == settings.openai_embedding_model
    return model_same and old.dims == settings.openai_embedding_dims


async def _close(embeddings: Embeddings) -> None:
    """Close the OpenAI clients, if any (the local model holds nothing to close)."""
    inner = embeddings.inner if isinstance(embeddings, CachedEmbeddings) else embeddings
    aclose = getattr(inner, "aclose", None)
    if aclose is not None:
        await aclose()


async def _open_source(path: Path) -> EdgeStore:
    """The old store, opened without an index config: only its points are read (no query
    is embedded), so its old embedder is not needed, not even its API key."""
    try:
        return await asyncio.to_thread(EdgeStore.open, path)
    except Exception as err:
        if "WouldBlock" in str(err):
            raise ReindexError(
                f"the embedded store at {path} is open in another process: stop the bot, "
                "then reindex"
            ) from err
        raise


async def _copy_all(
    store_path: Path, new_path: Path, embeddings: Embeddings, dims: int
) -> Counter[str]:
    """Every item of the old store into a new store at `new_path`, verified; items per
    top-level namespace."""
    async with await _open_source(store_path) as source:
        shard = source.client.shard
        source_count = await asyncio.to_thread(count_points, shard)
        index = index_config(embeddings, dims)
        target = await asyncio.to_thread(EdgeStore.open, new_path, index=index)
        async with target:
            async for records in point_pages(shard, with_vector=True):
                await _copy_page(target, records)
            namespaces = await _verify(source, target)
    copied = sum(namespaces.values())
    if copied != source_count:
        raise ReindexError(f"the old store holds {source_count:,} items, {copied:,} were read")
    return namespaces


async def _copy_page(target: EdgeStore, records: list[Any]) -> None:
    """Put one page of source points as items (embedding their `text` when the source
    had, as the item was put), then give each its source payload back: a put stamps
    `created_at`/`updated_at`/`expires_at` with now, and recall ranks by them."""
    ops = []
    for record in records:
        payload = record.payload or {}
        embedded = bool((record.vector or {}).get(VECTOR_NAME))
        ops.append(
            PutOp(
                namespace=tuple(payload["namespace"]),
                key=payload["key"],
                value=json.loads(payload["value_json"]),
                index=None if embedded else False,
                ttl=payload.get("ttl_minutes"),
            )
        )
    await target.abatch(ops)
    # The put set the timestamps from the clock; the source's payload, written back
    # whole, restores them (and whatever else the put would lay out differently).
    updates = [UpdateOperation.overwrite_payload([r.id], r.payload or {}) for r in records]

    def restore() -> None:
        for update in updates:
            target.client.shard.update(update)

    await asyncio.to_thread(restore)


async def _verify(source: EdgeStore, target: EdgeStore) -> Counter[str]:
    """Look every source point up in the new store: same payload (timestamps included),
    as many vectors, each of the new size. Items per top-level namespace."""
    namespaces: Counter[str] = Counter()
    dims = int((target.index_config or {})["dims"])
    async for records in point_pages(source.client.shard, with_vector=True):
        found = await asyncio.to_thread(
            target.client.shard.retrieve, [r.id for r in records], True, True
        )
        by_id = {str(p.id): p for p in found}
        for record in records:
            payload = record.payload or {}
            there = by_id.get(str(record.id))
            if there is None:
                raise ReindexError(f"item {payload.get('key')!r} is missing in the new store")
            old_vectors = (record.vector or {}).get(VECTOR_NAME) or []
            new_vectors = (there.vector or {}).get(VECTOR_NAME) or []
            if comparable_payload(there.payload or {}) != comparable_payload(payload):
                raise ReindexError(f"item {payload.get('key')!r} differs in the new store")
            if len(new_vectors) != len(old_vectors) or any(len(v) != dims for v in new_vectors):
                raise ReindexError(
                    f"item {payload.get('key')!r} has {len(new_vectors)} vectors in the new "
                    f"store, {len(old_vectors)} in the old one"
                )
            namespaces[(payload.get("namespace") or ["?"])[0]] += 1
    return namespaces


def _swap(store_path: Path, new_path: Path, old: EmbedderRecord | None) -> Path:
    """Old store aside (kept), new one in its place; the backup's path. A failed second
    rename puts the old store back, so `qdrant` is never left missing by an error."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = store_path.with_name(f"{store_path.name}.{old.provider if old else 'old'}-{stamp}.bak")
    os.rename(store_path, backup)
    try:
        os.rename(new_path, store_path)
    except BaseException:
        os.rename(backup, store_path)
        raise
    return backup


async def run_command(
    settings: Settings, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """`membot reindex`: one summary line, exit 0; a failure is one line and exit 1
    (a `ConfigError` propagates: the command reports it with exit 2)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        report = await reindex(settings)
    except ConfigError:
        raise
    except Exception as error:
        logger.debug("reindex failed", exc_info=True)
        text = " ".join(str(error).split()) or type(error).__name__
        print(
            f"membot reindex: {text} (the store at {settings.store_path} is untouched)",
            file=err,
        )
        return 1
    print(report.line(), file=out)
    return 0
