"""`open_store` picks the backend; the server path runs against qdrant-client's
in-process `:memory:` mode (no Qdrant server exists on this machine)."""

from __future__ import annotations

from pathlib import Path

from langchain_core.embeddings import Embeddings
from langgraph.store.memory import InMemoryStore
from langgraph.store.qdrant import AsyncQdrantStore

from engine.settings import Settings
from engine.store import EdgeStore
from engine.store.erase import adelete_namespace
from engine.store.factory import open_store
from tests.store_support import DIMS, hash_embed, hash_vector


class HashEmbeddings(Embeddings):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return hash_embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return hash_vector(text)


async def exercise(store) -> None:
    await store.aput(("memories", "1"), "a", {"text": "my name is Bob"})
    await store.aput(("memories", "1"), "b", {"text": "I like tea"})
    await store.aput(("memories", "2"), "c", {"text": "my name is Alice"})
    hits = await store.asearch(("memories", "1"), query="my name is Bob")
    assert [h.key for h in hits] == ["a", "b"]
    assert hits[0].score > 0.99
    assert await adelete_namespace(store, ("memories", "1")) == 2
    assert await store.asearch(("memories", "1")) == []
    assert [i.key for i in await store.asearch(("memories", "2"))] == ["c"]


async def test_embedded_default_is_edge_store(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with open_store(settings, HashEmbeddings(), DIMS) as store:
        assert isinstance(store, EdgeStore)
        assert store.path == tmp_path / "qdrant"
        await exercise(store)


async def test_server_mode_uses_langgraph_store_qdrant() -> None:
    settings = Settings(qdrant_url=":memory:", qdrant_collection="t")
    async with open_store(settings, HashEmbeddings(), DIMS) as store:
        assert isinstance(store, AsyncQdrantStore)
        await exercise(store)


async def test_generic_store_erasure_fallback() -> None:
    store = InMemoryStore()
    for i in range(1200):
        await store.aput(("memories", "x"), f"k{i}", {"text": str(i)})
    await store.aput(("memories", "y"), "k", {"text": "stays"})
    assert await adelete_namespace(store, ("memories", "x")) == 1200
    assert [i.key for i in await store.asearch(("memories",))] == ["k"]
