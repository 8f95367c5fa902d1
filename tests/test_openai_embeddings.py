"""OpenAIEmbeddings through the real `openai` SDK (sync and async) against the local fake API."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from langchain_core.embeddings import Embeddings

from engine.embeddings.openai import MAX_BATCH, OpenAIEmbeddings
from engine.models import ModelError
from engine.settings import Settings
from tests.fakes.llm import FakeLLM, fake_embedding

KEY = "sk-proj-embed-test-0123456789"

Make = Callable[..., OpenAIEmbeddings]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    # The fake serves from its own thread, so the blocking sync client cannot deadlock it.
    with FakeLLM() as server:
        yield server


@pytest.fixture
async def embedder(fake: FakeLLM) -> AsyncIterator[Make]:
    """Builds embedders on the fake's URL and closes their clients (sync and async) afterwards."""
    made: list[OpenAIEmbeddings] = []

    def make(**overrides: object) -> OpenAIEmbeddings:
        values: dict[str, object] = {
            "openai_api_key": KEY,
            "openai_base_url": fake.openai_url,
            "openai_embedding_model": "text-embedding-3-small",
            "openai_embedding_dims": 64,
            "llm_timeout_seconds": 60.0,  # only a hang guard: the fake answers at once
        }
        made.append(OpenAIEmbeddings(Settings(_env_file=None, **(values | overrides))))
        return made[-1]

    yield make
    for emb in made:
        emb.close()
        await emb.aclose()


def close_to(vector: list[float], expected: list[float]) -> bool:
    # The SDK asks for base64 float32, so values carry float32 precision only.
    return len(vector) == len(expected) and all(
        math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vector, expected, strict=True)
    )


def test_sync_embeddings_honour_model_and_dims(fake: FakeLLM, embedder: Make) -> None:
    emb = embedder()
    assert isinstance(emb, Embeddings) and emb.dims == 64
    docs = emb.embed_documents(["My name is Bob.", "I like green tea."])
    query = emb.embed_query("what is my name?")

    assert [len(v) for v in docs] == [64, 64] and len(query) == 64
    assert close_to(docs[0], fake_embedding("My name is Bob.", 64))
    assert close_to(docs[1], fake_embedding("I like green tea.", 64))
    assert close_to(query, fake_embedding("what is my name?", 64))
    first, second = fake.requests
    assert first.path == "/v1/embeddings"
    assert first.body["model"] == "text-embedding-3-small"
    assert first.body["dimensions"] == 64
    assert first.body["input"] == ["My name is Bob.", "I like green tea."]
    assert second.body["input"] == ["what is my name?"]
    assert first.headers["authorization"] == f"Bearer {KEY}"


async def test_async_embeddings_match_sync(fake: FakeLLM, embedder: Make) -> None:
    emb = embedder(openai_embedding_dims=32)
    docs = await emb.aembed_documents(["a", "b"])
    query = await emb.aembed_query("a")
    assert close_to(docs[0], fake_embedding("a", 32)) and close_to(docs[1], fake_embedding("b", 32))
    assert query == docs[0]
    assert [r.body["dimensions"] for r in fake.requests] == [32, 32]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_more_than_512_inputs_are_split_into_batches(
    fake: FakeLLM, embedder: Make, mode: str
) -> None:
    texts = [f"memory {i}" for i in range(MAX_BATCH + 1)]
    emb = embedder(openai_embedding_dims=8)
    vectors = emb.embed_documents(texts) if mode == "sync" else await emb.aembed_documents(texts)
    assert [len(r.body["input"]) for r in fake.requests] == [512, 1]
    assert len(vectors) == len(texts)
    assert close_to(vectors[0], fake_embedding("memory 0", 8))
    assert close_to(vectors[-1], fake_embedding(f"memory {MAX_BATCH}", 8))  # order kept


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_empty_string_is_sent_as_a_space(fake: FakeLLM, embedder: Make, mode: str) -> None:
    # The fake, like the API, answers 400 to an empty input.
    emb = embedder()
    texts = ["", "tea"]
    vectors = emb.embed_documents(texts) if mode == "sync" else await emb.aembed_documents(texts)
    assert fake.requests[0].body["input"] == [" ", "tea"]
    assert len(vectors) == 2 and close_to(vectors[0], fake_embedding(" ", 64))


def test_no_texts_make_no_request(fake: FakeLLM, embedder: Make) -> None:
    assert embedder().embed_documents([]) == []
    assert fake.requests == []


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_server_errors_after_retries_are_model_errors(
    fake: FakeLLM, embedder: Make, mode: str
) -> None:
    fake.fail(500, times=3)
    emb = embedder()
    with pytest.raises(ModelError) as caught:
        if mode == "sync":
            emb.embed_query("x")
        else:
            await emb.aembed_query("x")
    assert len(fake.requests) == 3  # the SDK's two retries
    assert (caught.value.status_code, caught.value.error_type) == (500, "server_error")
    assert KEY not in str(caught.value)


def test_fixed_size_model_gets_no_dimensions_and_a_size_mismatch_is_an_error(
    fake: FakeLLM, embedder: Make
) -> None:
    # ada-002 rejects `dimensions` and always returns 1536 values; the store expects 64 here.
    emb = embedder(openai_embedding_model="text-embedding-ada-002")
    with pytest.raises(ModelError, match="expected 64-dimensional vectors, got 1536"):
        emb.embed_query("x")
    assert "dimensions" not in fake.requests[0].body


def test_missing_key_is_model_error(fake: FakeLLM, embedder: Make) -> None:
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        embedder(openai_api_key=None)
