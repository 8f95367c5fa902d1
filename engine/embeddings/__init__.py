"""Text embedding back-ends that turn memories and queries into vectors for the store.

`local` (default): all-MiniLM-L6-v2 shipped in a PyPI wheel, run with NumPy; no key,
no download, real semantic recall. `openai`: OpenAI's embeddings API.
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from engine.embeddings.cache import CachedEmbeddings
from engine.settings import Settings


def make_embeddings(settings: Settings) -> tuple[Embeddings, int]:
    """The embedder the settings ask for (behind a per-text cache), and its vector size."""
    if settings.resolved_embedding_provider() == "openai":
        from engine.embeddings.openai import OpenAIEmbeddings

        # OpenAI's embeddings are symmetric too (one endpoint for queries and documents).
        return CachedEmbeddings(OpenAIEmbeddings(settings)), settings.openai_embedding_dims
    from engine.embeddings.local import LocalEmbeddings

    local = LocalEmbeddings()
    return CachedEmbeddings(local), local.dims
