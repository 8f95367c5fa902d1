"""OpenAI embeddings as a LangChain `Embeddings`, for the memory store when an OpenAI key is set.

A small class of our own rather than `langchain-openai`: it avoids that dependency (and its
tiktoken download on first use, impossible offline), sends the vector size the store's
collection was created with, checks that it got exactly that back, and reports failures as
`engine.models.ModelError` like the chat models do. Both sync and async paths are real (the
store calls either), each with its own SDK client.
"""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.embeddings import Embeddings

from engine.models import ModelError, sdk_error
from engine.settings import Settings

__all__ = ["OpenAIEmbeddings"]

# OpenAI accepts up to 2048 inputs per request and 300k tokens in total; 512 memories stay well
# inside both while keeping the number of round trips low.
MAX_BATCH = 512

# Models with a fixed output size, which reject the `dimensions` parameter.
_FIXED_SIZE_MODELS = frozenset({"text-embedding-ada-002"})


class OpenAIEmbeddings(Embeddings):
    """`embed_documents` / `embed_query` and their async twins, through the OpenAI API."""

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if settings.openai_api_key is None:
            raise ModelError(
                "openai: no API key configured (set OPENAI_API_KEY)", provider="openai"
            )
        self.model = settings.openai_embedding_model
        self.dims = settings.openai_embedding_dims
        self.name = f"openai:{self.model}"
        self._timeout = settings.llm_timeout_seconds
        options: dict[str, Any] = {
            "api_key": settings.openai_api_key.get_secret_value(),
            "base_url": settings.openai_base_url,
            "timeout": self._timeout,
            "max_retries": max_retries,
        }
        self._client = openai.OpenAI(**options)
        self._aclient = openai.AsyncOpenAI(**options)
        self._params: dict[str, Any] = {"model": self.model}
        if self.model not in _FIXED_SIZE_MODELS:
            self._params["dimensions"] = self.dims

    @staticmethod
    def _batches(texts: list[str]) -> list[list[str]]:
        # The API rejects "" outright; one space embeds as "nothing" without failing the batch.
        cleaned = [text if text else " " for text in texts]
        return [cleaned[i : i + MAX_BATCH] for i in range(0, len(cleaned), MAX_BATCH)]

    def _vectors(self, response: Any, expected: int) -> list[list[float]]:
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != expected:
            raise ModelError(
                f"{self.name}: asked for {expected} embeddings, got {len(data)}",
                provider="openai",
                error_type="invalid_response",
            )
        vectors = [list(item.embedding) for item in data]
        wrong = next((len(v) for v in vectors if len(v) != self.dims), None)
        if wrong is not None:
            # Storing these would corrupt the collection (or fail later, far from the cause).
            raise ModelError(
                f"{self.name}: expected {self.dims}-dimensional vectors, got {wrong}",
                provider="openai",
                error_type="dimension_mismatch",
            )
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            try:
                response = self._client.embeddings.create(input=batch, **self._params)
            except (openai.OpenAIError, ValueError) as err:  # ValueError: empty `data`
                raise sdk_error(self.name, err, timeout=self._timeout) from None
            vectors += self._vectors(response, len(batch))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in self._batches(texts):  # one at a time: kinder to rate limits
            try:
                response = await self._aclient.embeddings.create(input=batch, **self._params)
            except (openai.OpenAIError, ValueError) as err:
                raise sdk_error(self.name, err, timeout=self._timeout) from None
            vectors += self._vectors(response, len(batch))
        return vectors

    async def aembed_query(self, text: str) -> list[float]:
        return (await self.aembed_documents([text]))[0]

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        await self._aclient.close()
