"""Streamed replies through `MemoryBot.stream`: the text arrives piece by piece from the
offline model and from both vendors' real SDKs (through LangChain) against the local fake,
the pieces join to exactly the reply that is saved, a model failing mid-answer leaves the
partial text with a note (saved, marked interrupted), and closing a stream early frees the
thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from engine.bot import MemoryBot
from engine.settings import Settings
from engine.workflow import INTERRUPTED
from tests.fakes.llm import FakeLLM
from tests.fakes.waits import WAIT
from tests.llm_settings import fake_llm_settings

ANSWER = "Here is a long answer, with  double spaces,\nnew lines and unicode — héllo 你好 🙂 "
PROVIDERS = ["anthropic", "openai"]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(reply=lambda body: ANSWER) as server:
        yield server


async def collect(bot: MemoryBot, text: str, thread_id: str = "t1") -> tuple[list[str], str]:
    pieces = []
    async with bot.stream(user_id="u1", thread_id=thread_id, text=text) as replying:
        async for piece in replying:
            pieces.append(piece)
    return pieces, replying.reply.text


async def test_the_offline_model_streams_word_by_word(tmp_path: Path, local_embeddings) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, llm_provider="offline")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        pieces, whole = await collect(bot, "I'm a nurse at St. Mary's")
        assert len(pieces) > 3
        assert "".join(pieces) == whole
        assert whole.startswith("[offline] Noted:")
        [said, answered] = await bot.history("t1")
        assert isinstance(said, HumanMessage) and answered.content == whole


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_vendor_answer_streams_and_is_saved_whole(
    fake: FakeLLM, tmp_path: Path, local_embeddings, provider: str
) -> None:
    settings = fake_llm_settings(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        pieces, whole = await collect(bot, "tell me something long")
        assert len(pieces) > 5  # word by word, as the fake streamed it
        assert "".join(pieces) == whole == ANSWER == fake.streamed[-1]
        saved = (await bot.history("t1"))[-1]
        assert isinstance(saved, AIMessage) and saved.content == ANSWER


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_model_failing_mid_answer_keeps_the_partial_text_with_a_note(
    fake: FakeLLM, tmp_path: Path, local_embeddings, provider: str
) -> None:
    settings = fake_llm_settings(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        fake.break_stream(3)
        pieces, whole = await collect(bot, "tell me something long")
        partial = "Here is a"
        assert "".join(pieces) == whole
        assert whole.startswith(partial) and whole.endswith(")_")
        assert whole[len(partial) :].startswith(INTERRUPTED.split("{", 1)[0])
        # Saved: the question and the partial answer as written, marked interrupted.
        said, answered = await bot.history("t1")
        assert said.content == "tell me something long"
        assert answered.content == partial
        assert answered.response_metadata["interrupted"]
        # The next turn goes on normally, with the partial answer in its context.
        _, again = await collect(bot, "go on")
        assert again == ANSWER
        last_request = fake.chat_requests(
            "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
        )[-1]
        assert partial in str(last_request["messages"])


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_connection_cut_mid_answer_keeps_the_partial_text_with_a_note(
    fake: FakeLLM, tmp_path: Path, local_embeddings, provider: str
) -> None:
    # No error event: the network drops. Each SDK (or LangChain) raises its own kind of
    # error for that; all come out as the same interrupted answer.
    settings = fake_llm_settings(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        fake.break_stream(3, drop=True)
        pieces, whole = await collect(bot, "tell me something long")
        assert "".join(pieces) == whole
        assert whole.startswith("Here is a") and "I was cut off there: connection" in whole
        _, answered = await bot.history("t1")
        assert answered.content == "Here is a"


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_failure_before_any_text_is_an_apology(
    fake: FakeLLM, tmp_path: Path, local_embeddings, provider: str
) -> None:
    settings = fake_llm_settings(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        fake.break_stream(0)
        pieces, whole = await collect(bot, "hello?")
        assert "couldn't reach my language model" in whole
        assert pieces == []  # nothing was streamed; the apology is the reply
        [said] = await bot.history("t1")
        assert said.content == "hello?"


async def test_closing_a_stream_early_frees_the_thread(
    fake: FakeLLM, tmp_path: Path, local_embeddings
) -> None:
    fake.tokens_per_second = 20  # slow enough to close it midway
    settings = fake_llm_settings(fake, tmp_path, "anthropic")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        async with bot.stream(user_id="u1", thread_id="t1", text="first") as replying:
            first = await asyncio.wait_for(anext(replying), WAIT)
            assert first
        # The abandoned turn left nothing half saved, and the thread takes the next turn.
        fake.tokens_per_second = None
        reply = await asyncio.wait_for(bot.chat(user_id="u1", thread_id="t1", text="again"), WAIT)
        assert reply.text == ANSWER
        assert [m.content for m in await bot.history("t1")] == ["again", ANSWER]


async def test_feedback_is_counted_and_kept_with_the_answer(
    tmp_path: Path, local_embeddings
) -> None:
    from engine import metrics

    settings = Settings(_env_file=None, data_dir=tmp_path, llm_provider="offline")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="hello", message_id="m1")
        await bot.chat(user_id="u1", thread_id="t1", text="and again", message_id="m2")

        def bad() -> float:
            value = metrics.REGISTRY.get_sample_value("membot_feedback_total", {"rating": "bad"})
            return value or 0.0

        before = bad()
        await bot.feedback(user_id="u1", thread_id="t1", message_id="m1", good=False)
        assert bad() == before + 1
        first, second = [m for m in await bot.history("t1") if isinstance(m, AIMessage)]
        assert first.response_metadata["feedback"] == {"rating": "bad", "by": "u1"}
        assert "feedback" not in second.response_metadata
        # An answer no longer in the thread (or a made-up id) changes nothing.
        await bot.feedback(user_id="u1", thread_id="t1", message_id="nope", good=True)
        assert [m.content for m in await bot.history("t1")][-1] == second.content
