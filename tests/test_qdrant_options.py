"""The Qdrant collection options in settings reach the server when membot creates its
collection.

Runs the real path (`open_store` -> langgraph-store-qdrant's `setup()` -> qdrant-client over
HTTP) against `FakeQdrant`, which records the requests; qdrant-client's `:memory:` mode would
silently drop cluster options, and no Qdrant server exists here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.embeddings import Embeddings

from engine.settings import Settings
from engine.store.factory import open_store
from tests.fakes.qdrant import FakeQdrant, Received
from tests.fakes.waits import eventually

DIMS = 8
OPTION_KEYS = ("shard_number", "replication_factor", "write_consistency_factor")
# The store's one named multivector, as it goes over the wire.
EXPECTED_VECTORS = {
    "embedding": {
        "size": DIMS,
        "distance": "Cosine",
        "multivector_config": {"comparator": "max_sim"},
    }
}


class FixedEmbeddings(Embeddings):
    """Setup embeds nothing; any deterministic vector of the right size will do."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return [1.0] + [0.0] * (DIMS - 1)


@pytest.fixture
async def fake() -> AsyncIterator[FakeQdrant]:
    async with FakeQdrant() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_env_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test passes counts, not the environment of whoever runs it."""
    for name in ("SHARDS", "REPLICATION_FACTOR", "WRITE_CONSISTENCY_FACTOR", "COLLECTION"):
        monkeypatch.delenv(f"MEMBOT_QDRANT_{name}", raising=False)


def settings(fake: FakeQdrant, tmp_path: Path, **options: Any) -> Settings:
    return Settings(qdrant_url=fake.url, data_dir=tmp_path, _env_file=None, **options)


async def open_and_close(fake: FakeQdrant, config: Settings) -> list[Received]:
    """Open the store as membot does, close it, and return the requests it made."""
    start = len(fake.requests)
    async with open_store(config, FixedEmbeddings(), DIMS):
        pass
    # Besides setup's own `GET /`, each qdrant-client checks the server version from a thread
    # of its own. Let it land, so it cannot outlive the fake and warn in a later test.
    await eventually(
        lambda: len([r for r in fake.requests[start:] if (r.method, r.path) == ("GET", "/")]) >= 2,
        what="qdrant-client's version check",
    )
    return fake.requests[start:]


async def test_cluster_options_reach_the_create_request(fake: FakeQdrant, tmp_path: Path) -> None:
    config = settings(
        fake,
        tmp_path,
        qdrant_shards=3,
        qdrant_replication_factor=2,
        qdrant_write_consistency_factor=1,
    )
    await open_and_close(fake, config)

    [body] = fake.created(config.qdrant_collection)
    sent = {key: body.get(key) for key in OPTION_KEYS}
    assert sent == {"shard_number": 3, "replication_factor": 2, "write_consistency_factor": 1}
    assert body["vectors"] == EXPECTED_VECTORS
    assert body["metadata"] == {"langgraph_store_format": 1}


async def test_unset_options_are_left_to_the_server(fake: FakeQdrant, tmp_path: Path) -> None:
    config = settings(fake, tmp_path)
    await open_and_close(fake, config)

    [body] = fake.created(config.qdrant_collection)
    assert [key for key in OPTION_KEYS if key in body] == []
    assert body["vectors"] == EXPECTED_VECTORS


async def test_reopening_an_existing_collection_does_not_create_it(
    fake: FakeQdrant, tmp_path: Path
) -> None:
    first = settings(fake, tmp_path, qdrant_shards=3)
    await open_and_close(fake, first)
    assert len(fake.created(first.qdrant_collection)) == 1

    # Different options on reopening: an existing collection keeps its layout.
    second = settings(fake, tmp_path, qdrant_shards=5, qdrant_replication_factor=2)
    path = f"/collections/{second.qdrant_collection}"
    requests = await open_and_close(fake, second)

    assert ("GET", f"{path}/exists") in [(r.method, r.path) for r in requests]  # setup ran
    assert [r for r in requests if (r.method, r.path) == ("PUT", path)] == []
    assert [body["shard_number"] for body in fake.created(second.qdrant_collection)] == [3]
