"""EdgeStore behaviour beyond InMemoryStore parity: bad input, persistence across
processes, namespace erasure, TTL, and concurrency off the event loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from langgraph.store.base import InvalidNamespaceError
from langgraph.store.memory import InMemoryStore
from langgraph.store.qdrant import base as qdrant_base

from engine.store import EdgeStore
from tests.store_support import hash_embed, index_config, plain

ROOT = Path(__file__).resolve().parents[1]

BAD_NAMESPACES = [(), ("a.b",), ("a", 1), ("",), ("langgraph", "x")]


@pytest.mark.parametrize("namespace", BAD_NAMESPACES, ids=repr)
def test_invalid_namespaces_raise_what_langgraph_raises(namespace) -> None:
    memory = InMemoryStore(index=index_config())
    with EdgeStore.open(":memory:", index=index_config()) as edge:
        with pytest.raises(InvalidNamespaceError) as expected:
            memory.put(namespace, "k", {"text": "x"})
        with pytest.raises(InvalidNamespaceError) as actual:
            edge.put(namespace, "k", {"text": "x"})
        assert str(actual.value) == str(expected.value)
        edge.put(("ok",), "k", {"text": "still usable"})
        assert edge.get(("ok",), "k").value == {"text": "still usable"}


async def test_boolean_filters_match_stored_booleans() -> None:
    """`{"flag": True}` selects items whose flag is the boolean true, as the server store
    does. It used to select the number 1 instead (qdrant-edge read True as an int), so the
    engine kept string flags."""
    async with EdgeStore.open(":memory:", index=index_config()) as edge:
        values = {"yes": True, "no": False, "one": 1, "zero": 0, "word": "true"}
        for key, flag in values.items():
            await edge.aput(("a",), key, {"text": key, "flag": flag})
        await edge.aput(("a",), "unset", {"text": "unset"})
        await edge.aput(("a", "b"), "nested", {"text": "n", "meta": {"ok": True}})

        async def keys(flt: dict[str, Any], query: str | None = None) -> list[str]:
            return sorted(i.key for i in await edge.asearch(("a",), query=query, filter=flt))

        assert await keys({"flag": True}) == ["yes"]
        assert await keys({"flag": False}) == ["no"]
        assert await keys({"flag": {"$eq": True}}) == ["yes"]
        unless_false = ["nested", "one", "unset", "word", "yes", "zero"]  # missing is not False
        assert await keys({"flag": {"$ne": False}}) == unless_false
        assert await keys({"flag": True}, query="yes") == ["yes"]
        assert await keys({"meta": {"ok": True}}) == ["nested"]
        assert await keys({"flag": 1}) == ["one"]  # numbers stay numbers
        assert [i.key for i in edge.search(("a",), filter={"flag": False})] == ["no"]  # sync


def test_unsupported_filter_operator_is_a_value_error_and_harmless() -> None:
    memory = InMemoryStore(index=index_config())
    with EdgeStore.open(":memory:", index=index_config()) as edge:
        for store in (memory, edge):
            store.put(("a",), "k", {"text": "x", "n": 1})
            with pytest.raises(ValueError, match=r"Unsupported operator: \$regex"):
                store.search(("a",), filter={"n": {"$regex": "1"}})
        assert [i.key for i in edge.search(("a",), filter={"n": 1})] == ["k"]


def test_wrong_embedding_dims_fail_the_batch_without_writing() -> None:
    """InMemoryStore silently stores vectors of the wrong size; we refuse them."""
    config = index_config()
    config["embed"] = lambda texts: [v[:8] for v in hash_embed(texts)]
    with EdgeStore.open(":memory:", index=config) as edge:
        with pytest.raises(ValueError, match="size 8"):
            edge.put(("a",), "k", {"text": "x"})
        assert edge.get(("a",), "k") is None
        edge.put(("a",), "plain", {"text": "x"}, index=False)
        assert edge.get(("a",), "plain") is not None


def test_reopening_with_other_dims_is_refused(tmp_path: Path) -> None:
    EdgeStore.open(tmp_path / "s", index=index_config()).close()
    other = {**index_config(), "dims": 8}
    with pytest.raises(ValueError, match="16-dim"):
        EdgeStore.open(tmp_path / "s", index=other)
    EdgeStore.open(tmp_path / "s", index=index_config()).close()


def _run(code: str, path: Path) -> str:
    script = textwrap.dedent(code).format(path=str(path))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_data_survives_a_process_restart(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    _run(
        """
        from engine.store import EdgeStore
        from tests.store_support import index_config
        with EdgeStore.open({path!r}, index=index_config()) as store:
            store.put(("memories", "1"), "name", {{"text": "my name is Bob"}})
            store.put(("memories", "2"), "pet", {{"text": "I have a dog"}})
        """,
        store_dir,
    )
    out = _run(
        """
        from engine.store import EdgeStore
        from tests.store_support import index_config
        with EdgeStore.open({path!r}, index=index_config()) as store:
            hits = store.search(("memories", "1"), query="my name is Bob")
            print(hits[0].value["text"], round(hits[0].score, 3), store.count())
        """,
        store_dir,
    )
    assert out == "my name is Bob 1.0 2"


def test_delete_namespace_erases_one_user_and_nobody_else() -> None:
    with EdgeStore.open(":memory:", index=index_config()) as edge:
        for user in ("1", "2", "10"):
            for i in range(5):
                edge.put(("memories", user), f"k{i}", {"text": f"fact {i} of {user}"})
        edge.put(("memories", "1", "archive"), "old", {"text": "nested"})
        before = {
            u: [plain(i) for i in edge.search(("memories", u), limit=50)] for u in ("2", "10")
        }
        assert edge.delete_namespace(("memories", "1")) == 6
        assert edge.search(("memories", "1"), limit=50) == []
        assert edge.search(("memories", "1"), query="fact", limit=50) == []
        after = {u: [plain(i) for i in edge.search(("memories", u), limit=50)] for u in ("2", "10")}
        assert after == before and len(after["10"]) == 5
        assert edge.delete_namespace(("memories", "1")) == 0
        with pytest.raises(ValueError):
            edge.delete_namespace(())


async def test_async_delete_namespace() -> None:
    async with EdgeStore.open(":memory:", index=index_config()) as edge:
        await edge.aput(("memories", "a"), "k", {"text": "x"})
        await edge.aput(("memories", "b"), "k", {"text": "y"})
        assert await edge.adelete_namespace(("memories", "a")) == 1
        assert await edge.alist_namespaces() == [("memories", "b")]


class Clock:
    """The store's clock (langgraph-store-qdrant reads the time in one place), moved by
    the test: expiry is checked without sleeping, so a busy machine cannot expire an item
    between two reads."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_ttl_expiry_sweep_and_refresh_on_read(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(qdrant_base, "_now", clock)
    ttl = {"default_ttl": 0.01, "refresh_on_read": True}  # 0.6 s
    with EdgeStore.open(":memory:", index=index_config(), ttl=ttl) as edge:
        assert edge.supports_ttl
        edge.put(("t",), "read", {"text": "kept alive by reads"})
        edge.put(("t",), "idle", {"text": "nobody reads me"})
        edge.put(("t",), "forever", {"text": "no ttl"}, ttl=None)
        for _ in range(4):
            clock.advance(0.25)
            assert edge.get(("t",), "read") is not None  # refreshes its expiry
        assert edge.sweep_ttl() == 1
        assert edge.get(("t",), "idle") is None
        assert edge.get(("t",), "read", refresh_ttl=False) is not None
        assert edge.get(("t",), "forever") is not None


class ThreadsSeen:
    """Wraps the store's engine client and notes the thread of every call."""

    def __init__(self, client: Any) -> None:
        self.client, self.threads = client, set[int]()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.threads.add(threading.get_ident())
            return method(*args, **kwargs)

        return call


async def test_concurrent_coroutines_and_a_free_event_loop() -> None:
    """Hundreds of concurrent calls all land, and no engine call runs on the event loop's
    thread (they block: on the loop they would stall every other coroutine)."""
    async with EdgeStore.open(":memory:", index=index_config()) as edge:
        seen = ThreadsSeen(edge.client)
        edge.client = seen  # type: ignore[assignment]
        users = [f"u{i}" for i in range(20)]
        await asyncio.gather(
            *(
                edge.aput(("memories", u), f"k{j}", {"text": f"{u} fact {j}"})
                for u in users
                for j in range(15)
            )
        )
        results = await asyncio.gather(
            *(edge.asearch(("memories", u), query=f"{u} fact 3", limit=3) for u in users)
        )
        edge.client = seen.client
        assert seen.threads and threading.get_ident() not in seen.threads
        assert edge.count(("memories",)) == 300
        for user, hits in zip(users, results, strict=True):
            assert hits[0].value["text"] == f"{user} fact 3"
            assert all(tuple(h.namespace) == ("memories", user) for h in hits)


def test_closed_store_refuses_work() -> None:
    edge = EdgeStore.open(":memory:")
    edge.close()
    edge.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        edge.put(("a",), "k", {"v": 1})


def test_store_without_index_ignores_queries_like_langgraph() -> None:
    with EdgeStore.open(":memory:") as edge:
        edge.put(("a",), "k", {"text": "hello"})
        hits = edge.search(("a",), query="hello")
        assert [h.key for h in hits] == ["k"] and hits[0].score is None
