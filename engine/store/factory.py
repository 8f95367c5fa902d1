"""One place that picks the long-term store backend from settings.

Embedded (default): `EdgeStore` on local disk. Server mode (`MEMBOT_QDRANT_URL`): the
Qdrant team's `AsyncQdrantStore` (with our hybrid search mixed in), so we carry no server
client of our own. Both store items in the same layout and run the same hybrid query.

A store that cannot be used as configured (server unreachable, key refused, a collection
or embedded store built by another embedder) is a `ConfigError` naming the setting.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, TTLConfig
from langgraph.store.qdrant.base import QdrantIndexConfig

from engine.embeddings.record import ensure_record
from engine.errors import ConfigError
from engine.settings import Settings
from engine.store.edge import EdgeStore, StoreLayoutError
from engine.store.hybrid import HybridConfig
from engine.store.server import HybridQdrantStore, check_server

# Memories are embedded on their text only; other value fields are metadata.
MEMORY_FIELDS = ["text"]
# Recall ranks by meaning, words and recency (engine/store/hybrid.py); a memory's time
# is when it was said or became true, not when the store last wrote it. The weights are
# calibrated on bench/memory_quality.py (README, "Memory quality"): BM25 helps names and
# rare words but at 0.3 let common words ("city", "work") outrank meaning; recency
# doubles the weight of what was said today against what was said months ago (newest of
# two conflicting statements first: 0.59 -> 0.90); a message that says something
# changed ("we moved", "now") and a fact (short, clean) edge out an older or rambling
# message on the same subject.
MEMORY_HYBRID: HybridConfig = {
    "text_field": "text",
    "time_field": "valid_from",
    "lexical_weight": 0.1,
    "recency_weight": 1.0,
    "half_life_days": 30.0,
    "boosts": [
        {"field": "memory_type", "value": "episode", "weight": -0.05},
        {"field": "change", "value": "yes", "weight": 0.1},
    ],
    # Recall leaves out what must never be recalled (RECALLABLE, engine/memory/records.py).
    "indexed_fields": ["recall"],
}


def index_config(embeddings: Embeddings, dims: int) -> QdrantIndexConfig:
    config: dict = {"dims": dims, "embed": embeddings, "fields": MEMORY_FIELDS}
    config["hybrid"] = copy.deepcopy(MEMORY_HYBRID)
    return cast(QdrantIndexConfig, config)


@asynccontextmanager
async def open_store(
    settings: Settings, embeddings: Embeddings, dims: int
) -> AsyncIterator[BaseStore]:
    index = index_config(embeddings, dims)
    ttl: TTLConfig | None = None
    if settings.memory_ttl_days is not None:
        # Reading a memory (recall) counts as use and restarts its clock.
        ttl = {"default_ttl": settings.memory_ttl_days * 24 * 60, "refresh_on_read": True}
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        await check_server(settings.qdrant_url, api_key)
        async with HybridQdrantStore.from_url(
            settings.qdrant_url,
            api_key=api_key,
            collection_name=settings.qdrant_collection,
            index=index,
            ttl=ttl,
            # `setup` checks the server version itself; the client's own check runs in a
            # thread and prints a stray warning when the server is slow to answer.
            check_compatibility=False,
        ) as server_store:
            # Applied when the collection is created; an existing one keeps its layout.
            try:
                await server_store.setup(**settings.qdrant_collection_options())
            except ValueError as err:  # a collection of another vector size or format
                raise ConfigError(
                    "MEMBOT_QDRANT_COLLECTION",
                    f"{err} Set MEMBOT_QDRANT_COLLECTION to a new collection name, or the "
                    "MEMBOT_EMBEDDING_PROVIDER that built this one.",
                ) from err
            yield server_store
        return
    try:
        store = await asyncio.to_thread(EdgeStore.open, settings.store_path, index=index, ttl=ttl)
    except StoreLayoutError as err:  # a store older than its embedder record, of a size
        raise ConfigError(  # that is neither the local model's nor the configured OpenAI one
            "MEMBOT_EMBEDDING_PROVIDER",
            f"{err} Set MEMBOT_EMBEDDING_PROVIDER (and MEMBOT_OPENAI_EMBEDDING_DIMS) to the "
            "embedder that built it, or use a new MEMBOT_DATA_DIR.",
        ) from err
    async with store:
        # After the open: a store that failed to open must not be recorded as built.
        await asyncio.to_thread(ensure_record, settings.store_path, embeddings, dims)
        yield store
