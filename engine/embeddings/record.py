"""Which embedder built the embedded memory store, recorded next to it.

Vectors from two embedders cannot share a store: a query embedded by one model finds
nothing meaningful among vectors of another, and the vector sizes usually differ too
(384 local, 1536 OpenAI). With `MEMBOT_EMBEDDING_PROVIDER=auto` the embedder used to
follow whichever key happened to be set, so exporting `OPENAI_API_KEY` for the chat model
broke a store built offline. The store therefore records its embedder in
`<data_dir>/qdrant/membot_embedder.json`, inside the shard directory so it goes wherever
the store goes (moving `data/qdrant` aside starts afresh, record included), and `auto`
keeps using what is recorded. A store made before the record existed is identified by
its vector size.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, cast

from langchain_core.embeddings import Embeddings

from engine.embeddings.cache import CachedEmbeddings
from engine.embeddings.local import LocalEmbeddings
from engine.errors import ConfigError
from engine.store.edge import stored_layout

RECORD_FILE = "membot_embedder.json"
LOCAL_MODEL = "all-MiniLM-L6-v2"

Provider = Literal["local", "openai"]


@dataclass(frozen=True)
class EmbedderRecord:
    """The embedder a store was built with. `model` is None when inferred from an old
    store's vector size (the OpenAI model name was never written down)."""

    provider: Provider
    model: str | None
    dims: int

    def describe(self) -> str:
        """E.g. "local embeddings (all-MiniLM-L6-v2, 384 dims)", for messages."""
        model = f"{self.model}, " if self.model else ""
        return f"{self.provider} embeddings ({model}{self.dims} dims)"


def read_record(store_path: Path, openai_dims: int) -> EmbedderRecord | None:
    """The recorded embedder of the store at `store_path`; for a store older than the
    record, inferred from its vector size: 384 is the local model, `openai_dims` (the
    configured OpenAI size) OpenAI. None if there is no store there yet, or its size
    matches neither (then the store's own size check names the mismatch)."""
    if (recorded := _read_file(store_path)) is not None:
        return recorded
    layout = stored_layout(store_path)
    dims = layout.get("dims") if layout else None
    if dims == LocalEmbeddings.dims:
        return EmbedderRecord(provider="local", model=LOCAL_MODEL, dims=dims)
    if dims == openai_dims:
        return EmbedderRecord(provider="openai", model=None, dims=dims)
    return None


def _read_file(store_path: Path) -> EmbedderRecord | None:
    """The record file's content; None if it is missing or unreadable (torn by hand or by a
    full disk: the vector size still tells, and the next open writes it again)."""
    try:
        found = json.loads((store_path / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("provider") not in ("local", "openai"):
        return None
    if not isinstance(found.get("dims"), int):
        return None
    model = found.get("model")
    return EmbedderRecord(
        provider=cast(Provider, found["provider"]),
        model=model if isinstance(model, str) else None,
        dims=found["dims"],
    )


def ensure_record(store_path: Path, embeddings: Embeddings, dims: int) -> None:
    """Record the embedder of the store just opened at `store_path` with `embeddings`, once;
    refuse an embedder that differs from the recorded one (a caller that passed its own
    embedder, bypassing `make_embeddings`'s check)."""
    current = identify(embeddings, dims)
    if current is None:
        return
    recorded = _read_file(store_path)
    if recorded is None:
        write_record(store_path, current)
        return
    if recorded.provider != current.provider or (
        recorded.model is not None and recorded.model != current.model
    ):
        raise ConfigError(
            "MEMBOT_EMBEDDING_PROVIDER",
            f"the memory store at {store_path} was built with {recorded.describe()}, not "
            f"{current.describe()}. Set MEMBOT_EMBEDDING_PROVIDER={recorded.provider} (and "
            "its model) to keep using it, or use a new MEMBOT_DATA_DIR.",
        )


def write_record(store_path: Path, record: EmbedderRecord) -> None:
    """Record `record` for the store at `store_path` (atomically: a crash leaves the old
    file or none, never half a JSON document)."""
    record_file = store_path / RECORD_FILE
    partial = record_file.with_suffix(".json.tmp")
    partial.write_text(json.dumps(asdict(record)))
    os.replace(partial, record_file)


def identify(embeddings: Embeddings, dims: int) -> EmbedderRecord | None:
    """What to record for `embeddings`, or None for an embedder membot does not ship
    (tests and tools pass their own; nothing is recorded for those)."""
    inner = embeddings.inner if isinstance(embeddings, CachedEmbeddings) else embeddings
    if isinstance(inner, LocalEmbeddings):
        return EmbedderRecord(provider="local", model=LOCAL_MODEL, dims=dims)
    # Looked up, not imported: importing the OpenAI SDK only to answer "no" costs a second.
    openai_module = sys.modules.get("engine.embeddings.openai")
    if openai_module is not None and isinstance(inner, openai_module.OpenAIEmbeddings):
        return EmbedderRecord(provider="openai", model=inner.model, dims=dims)
    return None
