"""EdgeStore against LangGraph's own InMemoryStore: same operations, same answers.

Known, deliberate differences (also in the README):
- Unscored results (no `query`) come newest first, as in LangGraph's SQLite and
  Postgres stores; InMemoryStore returns them in dict insertion order. They are
  compared as sets here, and their order is checked against `updated_at`.
- A semantic `query` returns only items that have vectors; InMemoryStore pads a short
  page with unscored items. Only InMemoryStore's scored results are compared.
- InMemoryStore keeps listing a namespace after its last item is deleted (its dict
  keeps the empty entry); persistent stores list only namespaces that hold items.
  `drop_empty_namespaces` removes those entries from the reference.
- A `put(..., index=False)` over an item that had vectors leaves it without any, as in
  langgraph-store-qdrant, the server store EdgeStore shares its code and its data with
  (`_prepare_upserts_plan` in langgraph/store/qdrant/base.py upserts the point with
  `vector={}`, and a Qdrant upsert replaces the whole point). InMemoryStore keeps the old
  vectors (`_apply_put_ops` replaces only `_data`), and so do LangGraph's SQLite and
  Postgres stores (`_prepare_batch_put_queries` skips an `index=False` put's vectors and
  never deletes the old `store_vectors` rows): a search for what the item used to say
  then finds what it says now. `put` documents False as "disable indexing for this item",
  so the Qdrant behaviour is the one kept; `unindex` models it in the reference, and
  `test_put_without_index_drops_the_old_vectors` checks it on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langgraph.store.base import BaseStore
from langgraph.store.memory import InMemoryStore

from engine.store import EdgeStore
from tests.store_support import assert_same_ranked, assert_same_set, index_config, plain

NAMESPACES = [
    ("memories", "u1"),
    ("memories", "u2"),
    ("memories", "u2", "notes"),
    ("docs",),
    ("docs", "a"),
    ("x", "memories"),
]
PREFIXES = [(), ("memories",), ("memories", "u2"), ("docs",), ("x",), ("nope",)]
WORDS = ["bob", "tea", "lisbon", "name", "coffee", "dog", "payments", "blue"]
FILTERS: list[dict[str, Any] | None] = [
    None,
    {"tag": "a"},
    {"n": 2},
    {"n": 2.0},
    {"n": {"$gte": 2}},
    {"n": {"$gt": 1, "$lte": 4}},
    {"n": {"$lt": 3}},
    {"n": {"$ne": 3}},
    {"n": {"$eq": 1}},
    {"tag": {"$ne": "a"}},
    {"nested": {"x": 1}},
    {"tag": "b", "n": {"$gte": 1}},
]

texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4).map(" ".join)
values = st.fixed_dictionaries(
    {"text": texts, "n": st.integers(0, 5)},
    optional={
        "tag": st.sampled_from(["a", "b"]),
        "nested": st.fixed_dictionaries({"x": st.integers(0, 2)}),
    },
)
puts = st.tuples(
    st.just("put"),
    st.sampled_from(NAMESPACES),
    st.sampled_from(["k1", "k2", "k3", "k4"]),
    values,
    st.sampled_from([None, None, None, False]),
)
deletes = st.tuples(st.just("delete"), st.sampled_from(NAMESPACES), st.sampled_from(["k1", "k2"]))


def _search(prefix: tuple, query: str | None, flt: dict | None, limit: int, offset: int) -> tuple:
    if query is None:  # pages of unscored results differ by order: compare everything
        limit, offset = 100, 0
    return ("search", prefix, {"query": query, "filter": flt, "limit": limit, "offset": offset})


searches = st.builds(
    _search,
    st.sampled_from(PREFIXES),
    st.one_of(st.none(), texts),
    st.sampled_from(FILTERS),
    st.integers(1, 6),
    st.integers(0, 3),
)
lists = st.builds(
    lambda **args: ("list", args),
    prefix=st.one_of(
        st.none(), st.sampled_from([("memories",), ("docs",), ("*", "u2"), ("x", "*")])
    ),
    suffix=st.one_of(st.none(), st.sampled_from([("u1",), ("notes",), ("*",), ("memories",)])),
    max_depth=st.one_of(st.none(), st.integers(1, 3)),
    limit=st.integers(1, 10),
    offset=st.integers(0, 2),
)
operations = st.lists(st.one_of(puts, puts, deletes, searches, lists), min_size=1, max_size=30)


@pytest.fixture
def pair() -> Iterator[tuple[InMemoryStore, EdgeStore]]:
    edge = EdgeStore.open(":memory:", index=index_config())
    yield InMemoryStore(index=index_config()), edge
    edge.close()


def drop_empty_namespaces(memory: InMemoryStore) -> None:
    for namespace in [ns for ns, items in memory._data.items() if not items]:
        del memory._data[namespace]
        memory._vectors.pop(namespace, None)


def unindex(memory: InMemoryStore, ns: tuple[str, ...], key: str, index: Any) -> None:
    """After a put with `index=False`, the item has no vectors (see the module docstring)."""
    if index is False:
        memory._vectors[ns].pop(key, None)


def check_search(memory_results: list, edge_results: list, query: str | None) -> None:
    if query:
        assert_same_ranked([r for r in memory_results if r.score is not None], edge_results)
    else:
        assert_same_set(memory_results, edge_results)
        stamps = [r.updated_at for r in edge_results]
        assert stamps == sorted(stamps, reverse=True)


def apply_sync(memory: BaseStore, edge: BaseStore, op: tuple) -> None:
    match op:
        case ("put", ns, key, value, index):
            memory.put(ns, key, value, index=index)
            unindex(memory, ns, key, index)
            edge.put(ns, key, value, index=index)
            assert plain(edge.get(ns, key)) == plain(memory.get(ns, key))
        case ("delete", ns, key):
            memory.delete(ns, key)
            drop_empty_namespaces(memory)
            edge.delete(ns, key)
            assert edge.get(ns, key) is None
        case ("search", prefix, args):
            check_search(memory.search(prefix, **args), edge.search(prefix, **args), args["query"])
        case ("list", args):
            assert edge.list_namespaces(**args) == memory.list_namespaces(**args)


async def apply_async(memory: BaseStore, edge: BaseStore, op: tuple) -> None:
    match op:
        case ("put", ns, key, value, index):
            await memory.aput(ns, key, value, index=index)
            unindex(memory, ns, key, index)
            await edge.aput(ns, key, value, index=index)
            assert plain(await edge.aget(ns, key)) == plain(await memory.aget(ns, key))
        case ("delete", ns, key):
            await memory.adelete(ns, key)
            drop_empty_namespaces(memory)
            await edge.adelete(ns, key)
            assert await edge.aget(ns, key) is None
        case ("search", prefix, args):
            expected, actual = (
                await memory.asearch(prefix, **args),
                await edge.asearch(prefix, **args),
            )
            check_search(expected, actual, args["query"])
        case ("list", args):
            assert await edge.alist_namespaces(**args) == await memory.alist_namespaces(**args)


RANDOM = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Run every time, not only when the random search happens upon it: a re-put with
# `index=False` (module docstring), then a search for the old text.
REPUT_UNINDEXED = [
    ("put", ("docs",), "k1", {"text": "tea", "n": 1}, None),
    ("put", ("docs",), "k1", {"text": "bob", "n": 1}, False),
    _search(("docs",), "tea", None, 5, 0),
]


@RANDOM
@given(ops=operations)
@example(ops=REPUT_UNINDEXED)
def test_random_sequences_sync(ops: list[tuple]) -> None:
    with EdgeStore.open(":memory:", index=index_config()) as edge:
        memory = InMemoryStore(index=index_config())
        for op in ops:
            apply_sync(memory, edge, op)


@RANDOM
@given(ops=operations)
@example(ops=REPUT_UNINDEXED)
def test_random_sequences_async(ops: list[tuple]) -> None:
    async def scenario() -> None:
        async with EdgeStore.open(":memory:", index=index_config()) as edge:
            memory = InMemoryStore(index=index_config())
            for op in ops:
                await apply_async(memory, edge, op)

    asyncio.run(scenario())


def fill(store: BaseStore) -> None:
    for i in range(12):
        ns = ("memories", f"u{i % 3}")
        store.put(
            ns, f"k{i}", {"text": f"{WORDS[i % len(WORDS)]} {i}", "n": i % 5, "tag": "ab"[i % 2]}
        )


def test_query_pages_match_and_cover_everything(pair) -> None:
    memory, edge = pair
    fill(memory)
    fill(edge)
    pages = []
    for offset in range(0, 12, 5):
        expected = memory.search(("memories",), query="tea lisbon", limit=5, offset=offset)
        actual = edge.search(("memories",), query="tea lisbon", limit=5, offset=offset)
        assert_same_ranked(expected, actual)
        pages += actual
    assert len({(p.namespace, p.key) for p in pages}) == 12


def test_unscored_pages_are_newest_first_without_gaps(pair) -> None:
    _, edge = pair
    fill(edge)
    seen = []
    for offset in range(0, 12, 5):
        seen += edge.search(("memories",), limit=5, offset=offset)
    assert [i.key for i in seen] == [f"k{i}" for i in reversed(range(12))]


@pytest.mark.parametrize("flt", [f for f in FILTERS if f])
def test_each_filter_matches_in_memory_store(pair, flt) -> None:
    memory, edge = pair
    fill(memory)
    fill(edge)
    memory.put(("memories", "u9"), "nested", {"text": "n", "n": 2.0, "nested": {"x": 1}})
    edge.put(("memories", "u9"), "nested", {"text": "n", "n": 2.0, "nested": {"x": 1}})
    expected = memory.search(("memories",), filter=flt, limit=50)
    assert expected, "the filter should select something in this data"
    assert_same_set(expected, edge.search(("memories",), filter=flt, limit=50))
    assert_same_ranked(
        memory.search(("memories",), query="dog", filter=flt, limit=4),
        edge.search(("memories",), query="dog", filter=flt, limit=4),
    )


def test_update_keeps_created_at_and_moves_updated_at(pair) -> None:
    _, edge = pair
    edge.put(("a",), "k", {"text": "one"})
    first = edge.get(("a",), "k")
    edge.put(("a",), "k", {"text": "two"})
    second = edge.get(("a",), "k")
    assert second.value == {"text": "two"}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at


def test_index_fields_per_put_and_nested_paths() -> None:
    config = index_config(["text", "meta.title", "tags[*]"])
    memory = InMemoryStore(index=config)
    with EdgeStore.open(":memory:", index=config) as edge:
        for store in (memory, edge):
            store.put(("d",), "1", {"text": "alpha", "meta": {"title": "beta"}, "tags": ["x", "y"]})
            store.put(
                ("d",), "2", {"text": "gamma", "meta": {"title": "delta"}}, index=["meta.title"]
            )
            store.put(("d",), "3", {"text": "beta"}, index=False)
        for query in ("beta", "y", "delta", "gamma"):
            assert_same_ranked(
                [r for r in memory.search(("d",), query=query) if r.score is not None],
                edge.search(("d",), query=query),
            )


async def test_put_without_index_drops_the_old_vectors(pair) -> None:
    """The one deliberate difference in what is stored (module docstring): after a put
    with `index=False` the item is still there, but no query finds it by meaning, neither
    by its old text nor its new one, until a put indexes it again."""
    memory, edge = pair
    await edge.aput(("d",), "k", {"text": "tea"})
    assert [i.key for i in await edge.asearch(("d",), query="tea")] == ["k"]
    edge.put(("d",), "k", {"text": "coffee"}, index=False)
    assert edge.get(("d",), "k").value == {"text": "coffee"}
    assert edge.search(("d",), query="tea") == [] and edge.search(("d",), query="coffee") == []
    assert [i.key for i in edge.search(("d",))] == ["k"]  # still listed, only not by meaning
    await edge.aput(("d",), "k", {"text": "coffee"}, index=False)  # async: the same
    assert await edge.asearch(("d",), query="tea") == []
    edge.put(("d",), "k", {"text": "coffee"})
    (hit,) = edge.search(("d",), query="coffee")
    assert hit.key == "k" and hit.score == pytest.approx(1.0)
    # The reference keeps the vector of what the item no longer says (so `unindex`):
    memory.put(("d",), "k", {"text": "tea"})
    memory.put(("d",), "k", {"text": "coffee"}, index=False)
    (stale,) = [i for i in memory.search(("d",), query="tea") if i.score is not None]
    assert stale.value == {"text": "coffee"} and stale.score == pytest.approx(1.0)


def test_batch_with_mixed_operations(pair) -> None:
    from langgraph.store.base import GetOp, ListNamespacesOp, PutOp, SearchOp

    memory, edge = pair
    fill(memory)
    fill(edge)
    ops = [
        GetOp(("memories", "u0"), "k0"),
        SearchOp(("memories",), query="coffee", limit=3),
        PutOp(("memories", "u0"), "new", {"text": "fresh"}),
        ListNamespacesOp(match_conditions=None, max_depth=None, limit=10, offset=0),
        PutOp(("memories", "u0"), "k0", None),
    ]
    expected, actual = memory.batch(ops), edge.batch(ops)
    assert plain(actual[0]) == plain(expected[0])
    assert_same_ranked(expected[1], actual[1])
    assert actual[3] == expected[3]
    assert edge.get(("memories", "u0"), "k0") is None
    assert edge.get(("memories", "u0"), "new").value == {"text": "fresh"}
