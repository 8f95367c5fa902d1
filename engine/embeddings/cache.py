"""A small cache in front of the embedder, so one turn embeds its text once.

A turn recalls with the user's message as the query, then stores the same message as an
episode; the writer later searches with it again while learning. Without a cache that is
three forward passes of the local model (or three paid API calls) for one text. The
cache is keyed by the exact text, so a hit returns exactly the vector a miss would have
computed (the local model is symmetric: queries and documents share one space; for an
asymmetric embedder queries and documents are cached apart).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from langchain_core.embeddings import Embeddings

DEFAULT_SIZE = 1024


class CachedEmbeddings(Embeddings):
    def __init__(
        self, inner: Embeddings, *, size: int = DEFAULT_SIZE, symmetric: bool = True
    ) -> None:
        self.inner = inner
        self.size = size
        self.symmetric = symmetric
        self._vectors: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self.misses = 0  # texts actually embedded (benchmarks count model calls with it)

    def warm(self) -> None:
        """Load the inner model now if it loads lazily (the local one does)."""
        if warm := getattr(self.inner, "warm", None):
            warm()

    def _key(self, role: str, text: str) -> tuple[str, str]:
        return ("", text) if self.symmetric else (role, text)

    def _get(self, key: tuple[str, str]) -> list[float] | None:
        with self._lock:
            vector = self._vectors.get(key)
            if vector is not None:
                self._vectors.move_to_end(key)
            return vector

    def _put(self, key: tuple[str, str], vector: list[float]) -> None:
        with self._lock:
            self.misses += 1
            self._vectors[key] = vector
            self._vectors.move_to_end(key)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        found = {t: v for t in texts if (v := self._get(self._key("doc", t))) is not None}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            for text, vector in zip(missing, self.inner.embed_documents(missing), strict=True):
                self._put(self._key("doc", text), vector)
                found[text] = vector
        return [found[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        key = self._key("query", text)
        if (vector := self._get(key)) is None:
            vector = self.inner.embed_query(text)
            self._put(key, vector)
        return vector

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        found = {t: v for t in texts if (v := self._get(self._key("doc", t))) is not None}
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            vectors = await self.inner.aembed_documents(missing)
            for text, vector in zip(missing, vectors, strict=True):
                self._put(self._key("doc", text), vector)
                found[text] = vector
        return [found[t] for t in texts]

    async def aembed_query(self, text: str) -> list[float]:
        key = self._key("query", text)
        if (vector := self._get(key)) is None:
            vector = await self.inner.aembed_query(text)
            self._put(key, vector)
        return vector
