"""Text embedding back-ends that turn memories and queries into vectors for the store.

`local` (default): all-MiniLM-L6-v2 shipped in a PyPI wheel, run with NumPy; no key,
no download, real semantic recall. `openai`: OpenAI's embeddings API.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from engine.settings import Settings


def make_embeddings(settings: Settings) -> tuple[Embeddings, int]:
    """The embedder the settings ask for, and its vector size."""
    if settings.resolved_embedding_provider() == "openai":
        from engine.embeddings.openai import OpenAIEmbeddings

        return OpenAIEmbeddings(settings), settings.openai_embedding_dims
    from engine.embeddings.local import LocalEmbeddings

    local = LocalEmbeddings()
    return local, local.dims
