"""Shared fixtures. The local sentence model is loaded once per test session."""

from __future__ import annotations

import pytest

from engine.embeddings.local import LocalEmbeddings


@pytest.fixture(scope="session")
def local_embeddings() -> tuple[LocalEmbeddings, int]:
    embeddings = LocalEmbeddings()
    embeddings.embed_query("warm up")  # load the weights now, not inside a timed path
    return embeddings, embeddings.dims
