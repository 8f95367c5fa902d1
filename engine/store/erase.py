"""Erasing everything under a namespace prefix, whatever the backend.

`/forget` must be one filtered delete, not a read-then-delete loop that a concurrent
write could slip through. `EdgeStore` has it built in; for the server store we issue
the same filtered delete through its client (langgraph-store-qdrant has no such call).
Any other `BaseStore` (e.g. `InMemoryStore` in tests) falls back to search + delete.
"""

from __future__ import annotations

from langgraph.store.base import BaseStore
from langgraph.store.qdrant import AsyncQdrantStore
from langgraph.store.qdrant import _filters as filters
from qdrant_client import models

from engine.store.edge import EdgeStore

_PAGE = 500


async def adelete_namespace(store: BaseStore, prefix: tuple[str, ...]) -> int:
    """Delete every item under `prefix`; returns how many there were."""
    if not prefix:
        raise ValueError("Refusing to erase the whole store: the prefix is empty")
    if isinstance(store, EdgeStore):
        return await store.adelete_namespace(prefix)
    if isinstance(store, AsyncQdrantStore):
        selector = filters.every(filters.match("ns_prefixes", filters.encode_ns(prefix)))
        found = await store.client.count(store.collection_name, count_filter=selector, exact=True)
        await store.client.delete(
            store.collection_name, points_selector=models.FilterSelector(filter=selector), wait=True
        )
        return found.count
    erased = 0
    while items := await store.asearch(prefix, limit=_PAGE):
        for item in items:
            await store.adelete(tuple(item.namespace), item.key)
        erased += len(items)
    return erased
