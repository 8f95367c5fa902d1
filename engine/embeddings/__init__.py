"""Text embedding back-ends that turn memories and queries into vectors for the store.

`local` (default): all-MiniLM-L6-v2 shipped in a PyPI wheel, run with NumPy; no key,
no download, real semantic recall. `openai`: OpenAI's embeddings API.

An embedded store keeps the embedder it was built with (engine/embeddings/record.py):
`MEMBOT_EMBEDDING_PROVIDER=auto` follows the record rather than whichever key is set, and
an explicit provider that contradicts the record is a `ConfigError`, not a traceback
from the store.
"""

from __future__ import annotations

import logging

from langchain_core.embeddings import Embeddings

from engine.embeddings.cache import CachedEmbeddings
from engine.embeddings.record import EmbedderRecord, Provider, read_record
from engine.errors import ConfigError
from engine.settings import Settings

logger = logging.getLogger(__name__)

# Switching embedders means embedding every memory again: `membot reindex` does it in
# place (old store kept as a backup), so that is the fix offered, not losing the memories.
_SWITCH_HINT = (
    "to switch, stop the bot and run `membot reindex` with the new setting (it re-embeds "
    "the memories into a new store and keeps {path} as a backup), or start afresh in a "
    "new MEMBOT_DATA_DIR"
)


def embedding_provider(settings: Settings) -> tuple[Provider, EmbedderRecord | None]:
    """The embedder to use and the store's record of its own (None: no embedded store
    yet, or server mode). Raises `ConfigError` when the settings contradict the store."""
    wanted = settings.resolved_embedding_provider()
    record = (
        None
        if settings.qdrant_url
        else read_record(settings.store_path, settings.openai_embedding_dims)
    )
    if record is None:
        return wanted, None
    path = settings.store_path
    switch = _SWITCH_HINT.format(path=path)
    if settings.embedding_provider != "auto" and settings.embedding_provider != record.provider:
        raise ConfigError(
            "MEMBOT_EMBEDDING_PROVIDER",
            f"MEMBOT_EMBEDDING_PROVIDER={settings.embedding_provider}, but the memory store "
            f"at {path} was built with {record.describe()}. Set MEMBOT_EMBEDDING_PROVIDER="
            f"{record.provider} (or auto) to keep using it, or {switch}.",
        )
    if record.provider == "openai":
        if settings.openai_api_key is None:
            raise ConfigError(
                "OPENAI_API_KEY",
                f"the memory store at {path} was built with {record.describe()}, but "
                f"OPENAI_API_KEY is not set. Set OPENAI_API_KEY, or {switch}.",
            )
        if settings.openai_embedding_dims != record.dims:
            raise ConfigError(
                "MEMBOT_OPENAI_EMBEDDING_DIMS",
                f"MEMBOT_OPENAI_EMBEDDING_DIMS={settings.openai_embedding_dims}, but the "
                f"memory store at {path} holds {record.dims}-dim vectors. Set "
                f"MEMBOT_OPENAI_EMBEDDING_DIMS={record.dims}, or {switch}.",
            )
        if record.model is not None and settings.openai_embedding_model != record.model:
            raise ConfigError(
                "MEMBOT_OPENAI_EMBEDDING_MODEL",
                f"MEMBOT_OPENAI_EMBEDDING_MODEL={settings.openai_embedding_model}, but the "
                f"memory store at {path} was built with {record.model}, whose vectors "
                f"mean something else. Set MEMBOT_OPENAI_EMBEDDING_MODEL={record.model}, "
                f"or {switch}.",
            )
    return record.provider, record


def make_embeddings(settings: Settings) -> tuple[Embeddings, int]:
    """The embedder for these settings and this store (behind a per-text cache), and its
    vector size. Under `auto` a store built with the other embedder keeps its own, with a
    warning, instead of failing because an API key appeared."""
    provider, record = embedding_provider(settings)
    if record is not None and provider != settings.resolved_embedding_provider():
        logger.warning(
            "OPENAI_API_KEY is set, but the memory store at %s was built with %s, so membot "
            "keeps using them (MEMBOT_EMBEDDING_PROVIDER=auto follows the store). To switch "
            "to openai embeddings, stop the bot and run `MEMBOT_EMBEDDING_PROVIDER=openai "
            "membot reindex` (it re-embeds the memories), then set "
            "MEMBOT_EMBEDDING_PROVIDER=openai; to keep local ones and silence this, set "
            "MEMBOT_EMBEDDING_PROVIDER=local.",
            settings.store_path,
            record.describe(),
        )
    return build_embeddings(
        settings,
        provider,
        missing_key="MEMBOT_EMBEDDING_PROVIDER=openai needs OPENAI_API_KEY. Set it, or set "
        "MEMBOT_EMBEDDING_PROVIDER=local (or auto).",
    )


def build_embeddings(
    settings: Settings, provider: str, *, missing_key: str
) -> tuple[Embeddings, int]:
    """The embedder `provider` names (behind a per-text cache) and its vector size, with no
    look at the store: `make_embeddings` checks the store first, `membot reindex` builds
    the embedder the store is to be switched to. `missing_key` is the error's line when
    OpenAI is named without its key."""
    if provider == "openai":
        if settings.openai_api_key is None:  # only an explicit `openai` gets here
            raise ConfigError("OPENAI_API_KEY", missing_key)
        from engine.embeddings.openai import OpenAIEmbeddings

        # OpenAI's embeddings are symmetric too (one endpoint for queries and documents).
        return CachedEmbeddings(OpenAIEmbeddings(settings)), settings.openai_embedding_dims
    from engine.embeddings.local import LocalEmbeddings

    local = LocalEmbeddings()
    return CachedEmbeddings(local), local.dims
