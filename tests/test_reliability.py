"""Reliability under concurrency and outages: per-thread ordering, a memory store that
fails and comes back (the journal applies what was told meanwhile), a checkpointer
outage, and a model that hangs past the turn's deadline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from engine.bot import MemoryBot
from engine.memory.manager import MEMORY_TOOL
from engine.store import EdgeStore
from engine.store.factory import index_config
from tests.fakes.llm import FakeLLM, ToolUse, last_user_text
from tests.fakes.qdrant import FakeQdrant
from tests.fakes.waits import WAIT, eventually
from tests.llm_settings import fake_llm_settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


settings_for = fake_llm_settings


async def test_fifty_concurrent_messages_are_kept_and_answered_in_arrival_order(
    fake, tmp_path, local_embeddings
) -> None:
    fake.reply = lambda body: "" if body.get("tools") else f"re: {last_user_text(body)}"
    fake.delay = lambda body: 0.01
    settings = settings_for(fake, tmp_path, context_token_budget=100_000)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        answered: list[str] = []

        async def send(n: int) -> None:
            reply = await bot.chat(user_id="u1", thread_id="t", text=f"message {n}")
            answered.append(reply.text)

        await asyncio.gather(*(send(n) for n in range(50)))
        history = await bot.history("t")
        assert [m.content for m in history if isinstance(m, HumanMessage)] == [
            f"message {n}" for n in range(50)
        ]
        assert [m.content for m in history if isinstance(m, AIMessage)] == [
            f"re: message {n}" for n in range(50)
        ]
        assert answered == [f"re: message {n}" for n in range(50)]


class FlakyStore(EdgeStore):
    """The real embedded store with a switch that makes every operation fail like an
    unreachable server (the issue's "embedded: an injected failure")."""

    down = False

    async def abatch(self, ops):
        if self.down:
            raise ConnectionRefusedError("memory store unreachable")
        return await super().abatch(ops)


@asynccontextmanager
async def flaky_bot(fake: FakeLLM, tmp_path: Path, embeddings, **extra: Any):
    embedder, dims = embeddings
    store = FlakyStore.open(tmp_path / "qdrant", index=index_config(embedder, dims))
    settings = settings_for(fake, tmp_path, memory_debounce_seconds=0, **extra)
    with store:
        async with MemoryBot.open(settings, embeddings=embeddings, store=store) as bot:
            yield bot, store


def remembering_model(body: dict[str, Any]) -> str | ToolUse:
    if not body.get("tools"):
        system = body.get("system", "")
        return "You are Bob." if '"My name is Bob."' in system else "I don't know your name."
    said = json.loads(body["messages"][0]["content"])["new_messages"][0]["text"]
    if "name is Bob" in said:
        return ToolUse(
            MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": "My name is Bob."}]}
        )
    return ToolUse(MEMORY_TOOL.name, {"operations": []})


async def test_a_memory_told_during_a_store_outage_arrives_after_recovery(
    fake, tmp_path, local_embeddings
) -> None:
    fake.reply = remembering_model
    async with flaky_bot(fake, tmp_path, local_embeddings) as (bot, store):
        store.down = True
        reply = await bot.chat(user_id="u1", thread_id="t1", text="Hi, my name is Bob")
        assert not reply.error  # answered, without memories
        await bot.flush_memories()
        assert await bot.journal.size() == 1  # the learning failed and is kept

        answer = await bot.chat(user_id="u1", thread_id="t2", text="What is my name?")
        assert answer.text == "I don't know your name."  # nothing false, nothing invented
        assert "no stored facts" in fake.chat_requests()[-1]["system"]
        # Its learning, too, fails and waits in the journal: settled before the store is
        # back, or the retry below would race the writer for it.
        await bot.flush_memories()
        assert await bot.journal.size() == 2

        store.down = False
        assert await bot.retry_journal(older_than=0) == 2
        assert await bot.journal.size() == 0
        assert [m.value["text"] for m in await bot.memories("u1")] == ["My name is Bob."]
        assert (
            await bot.chat(user_id="u1", thread_id="t3", text="my name?")
        ).text == "You are Bob."


async def test_the_journal_is_retried_in_the_background(fake, tmp_path, local_embeddings) -> None:
    fake.reply = remembering_model
    async with flaky_bot(fake, tmp_path, local_embeddings, memory_retry_seconds=0.2) as (
        bot,
        store,
    ):
        store.down = True
        await bot.chat(user_id="u1", thread_id="t1", text="my name is Bob")
        await bot.flush_memories()
        store.down = False

        async def drained() -> bool:
            return await bot.journal.size() == 0

        await eventually(drained, what="the journal retried in the background")
        assert [m.value["text"] for m in await bot.memories("u1")] == ["My name is Bob."]


async def test_checkpointer_outage_gets_a_clear_apology(fake, tmp_path, local_embeddings) -> None:
    fake.reply = lambda body: "ok"
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        bot.checkpointer.conn.close()  # the SQLite connection is gone
        reply = await bot.chat(user_id="u1", thread_id="t1", text="are you there?")
        assert reply.error and "conversation storage" in reply.text
        assert "send your message again" in reply.text
        assert fake.chat_requests() == []  # nothing answered that could not be saved


async def test_a_hanging_model_hits_the_turn_deadline(fake, tmp_path, local_embeddings) -> None:
    fake.reply = lambda body: "too late"
    hang = fake.hold(lambda body: not body.get("tools"))  # never released: the model hangs
    settings = settings_for(fake, tmp_path, answer_timeout_seconds=0.5)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        async with asyncio.timeout(WAIT):  # without the deadline the turn would hang
            reply = await bot.chat(user_id="u1", thread_id="t1", text="hello?")
        await hang.arrived()  # it did reach the model
        assert reply.error and "couldn't reach my language model" in reply.text
        assert "deadline" in reply.text
        assert [m.content for m in await bot.history("t1")] == ["hello?"]


async def test_server_store_gone_answers_without_memories_and_journals(
    fake, tmp_path, local_embeddings
) -> None:
    """Server mode: the Qdrant server answers at startup, then its port closes
    (connection refused). Turns still get answers, without memories and without claiming
    any; what the user said waits in the journal."""
    fake.reply = remembering_model
    qdrant = FakeQdrant()
    await asyncio.to_thread(qdrant.start)
    settings = settings_for(
        fake,
        tmp_path,
        qdrant_url=qdrant.url,
        memory_debounce_seconds=0,
        recall_timeout_seconds=2,
    )
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        # Besides setup's own `GET /`, qdrant-client checks the server version from a thread
        # of its own: let it land first.
        await eventually(lambda: len(qdrant.requests_to("GET", "/")) >= 2, what="version check")
        await asyncio.to_thread(qdrant.close)  # the server is gone: connection refused
        reply = await bot.chat(user_id="u1", thread_id="t1", text="Hi, my name is Bob")
        assert not reply.error
        answer = await bot.chat(user_id="u1", thread_id="t2", text="What is my name?")
        assert answer.text == "I don't know your name."
        assert "no stored facts" in fake.chat_requests()[-1]["system"]
        await bot.flush_memories()
        assert await bot.journal.size() == 2  # both turns' learning waits for the store
