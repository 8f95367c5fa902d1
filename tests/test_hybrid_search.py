"""Hybrid, recency-aware search (engine/store/hybrid.py): the same Qdrant query-API
request on the embedded engine (Qdrant Edge) and in server mode (the server store over
qdrant-client's in-process mode, which implements the same query API; no Qdrant server
exists on this machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import BaseStore
from langgraph.store.qdrant import AsyncQdrantStore
from langgraph.store.qdrant._payload import point_id
from qdrant_client import AsyncQdrantClient, models

from engine.store import EdgeStore
from engine.store.server import HybridQdrantStore
from tests.store_support import DIMS, hash_embed

NOW = datetime.now(UTC)


def hybrid_index(**options: Any) -> dict[str, Any]:
    return {
        "dims": DIMS,
        "embed": hash_embed,
        "fields": ["text"],
        "hybrid": {"text_field": "text", "time_field": "valid_from", **options},
    }


def day(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


def said(text: str) -> dict[str, str]:
    return {"text": text, "valid_from": day(0)}


ITEMS = [
    ("lisbon", {"text": "I live in Lisbon", "valid_from": day(40)}),
    ("porto", {"text": "I live in Porto", "valid_from": day(3)}),
    ("band", {"text": "I play bass in a band called Kaltfront", "valid_from": day(20)}),
    ("build", {"text": "the build keeps failing on main", "valid_from": day(1)}),
    ("undated", {"text": "naming things is hard"}),
]


@pytest.fixture(params=["edge", "server"])
async def store(request) -> AsyncIterator[BaseStore]:
    index = hybrid_index(
        boosts=[{"field": "kind", "value": "fact", "weight": 0.05}], indexed_fields=["recall"]
    )
    if request.param == "edge":
        with EdgeStore.open(":memory:", index=index) as edge:
            yield edge
        return
    server = HybridQdrantStore(AsyncQdrantClient(":memory:"), collection_name="t", index=index)
    await server.setup()
    yield server


async def fill(store: BaseStore) -> None:
    for key, value in ITEMS:
        await store.aput(("memories", "u1"), key, value)
    await store.aput(("memories", "u2"), "other", {"text": "I live in Porto", "valid_from": day(0)})


async def test_newest_of_equal_statements_ranks_first(store) -> None:
    said = "rehearsal is on tuesday"
    await store.aput(("memories", "u1"), "old", {"text": said, "valid_from": day(30)})
    await store.aput(("memories", "u1"), "new", {"text": said, "valid_from": day(2)})
    hits = await store.asearch(("memories", "u1"), query="rehearsal is on tuesday")
    assert [h.key for h in hits] == ["new", "old"]
    assert hits[0].score > hits[1].score


async def test_bm25_finds_a_rare_word_the_vector_does_not_know(store) -> None:
    await fill(store)
    hits = await store.asearch(("memories", "u1"), query="Kaltfront")
    assert hits[0].key == "band"


async def test_boost_and_namespace_filter(store) -> None:
    await fill(store)
    await store.aput(("memories", "u1"), "fact", {"text": "naming things is hard", "kind": "fact"})
    hits = await store.asearch(("memories", "u1"), query="naming things is hard")
    assert [h.key for h in hits[:2]] == ["fact", "undated"]
    assert hits[0].score == pytest.approx(hits[1].score + 0.05, abs=1e-4)
    assert all(h.namespace == ("memories", "u1") for h in hits)


async def test_filter_and_boost_fields_are_indexed(store) -> None:
    """Without these indexes the engine reads every candidate's payload to test a filter or
    a boost: a recall search at 100k memories took 6.8 ms instead of 1.1 ms."""
    await fill(store)
    hits = await store.asearch(("memories", "u1"), query="Porto", filter={"recall": {"$ne": "x"}})
    assert hits and hits[0].key == "porto"
    if isinstance(store, EdgeStore):
        assert {"value.kind", "value.recall"} <= set(store.client.shard.info().payload_schema)
        return
    # qdrant-client's in-process mode keeps no payload indexes: check what was asked.
    client = AsyncQdrantClient(":memory:")
    asked: list[str] = []
    create = client.create_payload_index

    async def recording(collection_name: str, field_name: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(field_name)
        return await create(collection_name, field_name, *args, **kwargs)

    client.create_payload_index = recording  # type: ignore[method-assign]
    await HybridQdrantStore(client, collection_name="t", index=store.index_config).setup()
    assert {"value.kind", "value.recall"} <= set(asked)


async def test_edge_and_server_rank_alike() -> None:
    """Same items, same queries: the same keys in the same order, scores equal."""
    index = hybrid_index()
    server = HybridQdrantStore(AsyncQdrantClient(":memory:"), collection_name="t", index=index)
    await server.setup()
    with EdgeStore.open(":memory:", index=index) as edge:
        for backend in (edge, server):
            await fill(backend)
        for query in ["where do I live?", "Kaltfront", "build failing", "hard names"]:
            on_edge = await edge.asearch(("memories", "u1"), query=query, limit=5)
            on_server = await server.asearch(("memories", "u1"), query=query, limit=5)
            assert [h.key for h in on_edge] == [h.key for h in on_server], query
            for a, b in zip(on_edge, on_server, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-3), (query, a.key)


async def test_the_server_gets_one_query_api_request() -> None:
    index = hybrid_index()
    server = HybridQdrantStore(AsyncQdrantClient(":memory:"), collection_name="t", index=index)
    from langgraph.store.base import SearchOp

    request = server._search_request(
        SearchOp(("memories", "u1"), query="where do I live?"),
        None,
        [0.1] * DIMS,
        limit=5,
        with_payload=True,
    )
    assert isinstance(request.query, models.FormulaQuery)
    dense, lexical = request.prefetch
    assert dense.using == "embedding" and isinstance(lexical.query, models.SparseVector)
    assert lexical.using == "bm25"


async def test_every_point_written_keeps_its_bm25_vector(store) -> None:
    """The person's filter comes first in a sparse search, so its cost stays with their
    own memories however many others the store holds (bench/engine_bench.py)."""
    await fill(store)
    await store.aput(("memories", "u1"), "empty", said("..."))
    await store.aput(("memories", "u1"), "climb", said("started climbing"))
    ids = [point_id(("memories", "u1"), key) for key in ("band", "empty", "climb")]
    if isinstance(store, EdgeStore):
        records = store.client.shard.retrieve(ids, False, True)
        words = {str(r.id): (r.vector or {}).get("bm25") for r in records}
    else:
        records = await store.client.retrieve("t", ids, with_vectors=True)
        words = {str(r.id): (r.vector or {}).get("bm25") for r in records}
    assert words[ids[0]] is not None and len(words[ids[0]].indices) >= 3
    assert words[ids[1]] is None  # no word worth indexing: no sparse vector
    hits = await store.asearch(("memories", "u1"), query="what am I climbing?")
    assert hits[0].key == "climb"


async def test_a_store_made_before_hybrid_search_gets_its_text_index(tmp_path: Path) -> None:
    plain = {"dims": DIMS, "embed": hash_embed, "fields": ["text"]}
    with EdgeStore.open(tmp_path / "s", index=plain) as old:
        old.put(("memories", "u1"), "band", {"text": "I play bass in Kaltfront"})
        old.put(("memories", "u1"), "x", {"text": "something else entirely"})
    with EdgeStore.open(tmp_path / "s", index=hybrid_index()) as reopened:
        assert reopened.lexical == "text"  # until `membot reindex` rebuilds it
        hits = reopened.search(("memories", "u1"), query="kaltfront")
        assert hits[0].key == "band"


async def test_a_server_collection_made_before_bm25_vectors_ranks_on_its_text_index() -> None:
    client = AsyncQdrantClient(":memory:")
    await AsyncQdrantStore(client, collection_name="t", index=hybrid_index()).setup()
    server = HybridQdrantStore(client, collection_name="t", index=hybrid_index())
    await server.setup()
    assert server.lexical == "text"
    await fill(server)
    hits = await server.asearch(("memories", "u1"), query="Kaltfront")
    assert hits[0].key == "band"
