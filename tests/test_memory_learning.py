"""Memory that learns by itself: LLM extraction with ADD/UPDATE/DELETE through both vendor
SDKs (pointed at the local fake), malformed model output, provider failures, debouncing,
per-user isolation, and bounded conversations with a running summary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages.utils import count_tokens_approximately

from engine.bot import MemoryBot
from engine.memory.manager import MEMORY_TOOL
from engine.memory.namespace import memory_namespace
from engine.settings import Settings
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.fakes.waits import WAIT
from tests.llm_settings import fake_llm_settings

PATHS = {"anthropic": "/v1/messages", "openai": "/v1/chat/completions"}


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def settings_for(fake: FakeLLM, data_dir: Path, provider: str = "anthropic", **extra) -> Settings:
    extra.setdefault("memory_debounce_seconds", 0.0)
    return fake_llm_settings(fake, data_dir, provider, **extra)


def extraction_payload(body: dict[str, Any]) -> dict[str, Any]:
    """What the manager showed the 'model': existing memories and the new messages."""
    for message in body["messages"]:
        if message["role"] == "user":
            content = message["content"]
            text = content if isinstance(content, str) else content[0]["text"]
            return json.loads(text)
    raise AssertionError("no user message in the extraction request")


def is_tool_call(body: dict[str, Any]) -> bool:
    return bool(body.get("tools"))


def ops(*operations: dict[str, Any]) -> ToolUse:
    return ToolUse(MEMORY_TOOL.name, {"operations": list(operations)})


def moving_model(body: dict[str, Any]) -> str | ToolUse:
    """A scripted model that behaves as a good extractor would for this conversation."""
    if not is_tool_call(body):
        return echo_reply(body)
    payload = extraction_payload(body)
    said = " ".join(m["text"] for m in payload["new_messages"] if m["from"] == "user")
    existing = {m["text"]: m["id"] for m in payload["existing_memories"]}
    if "moved from Berlin to Lisbon" in said and "I live in Berlin." in existing:
        return ops(
            {
                "action": "UPDATE",
                "id": existing["I live in Berlin."],
                "text": "I live in Lisbon (moved from Berlin last month).",
                "kind": "fact",
                "reason": "moved",
            }
        )
    if "I live in Berlin" in said:
        return ops({"action": "ADD", "text": "I live in Berlin.", "kind": "fact"})
    return ops()


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_a_move_updates_the_old_memory_and_history_shows_it(
    fake, tmp_path, local_embeddings, provider
):
    fake.reply = moving_model
    settings = settings_for(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="I live in Berlin, by the way.")
        moved = "I moved from Berlin to Lisbon last month"
        await bot.chat(user_id="u1", thread_id="t2", text=moved)
        await bot.flush_memories()

        memories = await bot.memories("u1")
        assert [m.value["text"] for m in memories] == [
            "I live in Lisbon (moved from Berlin last month)."
        ]
        memory = memories[0]
        assert memory.value["source_thread"] == "t2"
        assert memory.value["created_at"] < memory.value["updated_at"]
        history = await bot.memory_history("u1", memory.key)
        assert [(h["action"], h["old"], h["new"]) for h in history] == [
            ("added", None, "I live in Berlin."),
            ("updated", "I live in Berlin.", "I live in Lisbon (moved from Berlin last month)."),
        ]
        assert history[1]["by"] == f"model:{bot.model.name}" and history[1]["thread"] == "t2"
        # The similar old memory was found and shown to the model under a short id.
        second = [b for b in fake.tool_requests(PATHS[provider]) if "Lisbon" in json.dumps(b)]
        shown = extraction_payload(second[-1])["existing_memories"]
        assert shown[0] == {"id": "m1", "text": "I live in Berlin."}


async def test_a_delete_removes_a_memory_that_is_no_longer_true(fake, tmp_path, local_embeddings):
    def model(body):
        if not is_tool_call(body):
            return "ok"
        payload = extraction_payload(body)
        if payload["existing_memories"]:
            return ops({"action": "DELETE", "id": "m1", "reason": "no longer has a dog"})
        return ops({"action": "ADD", "text": "I have a dog named Rex.", "kind": "fact"})

    fake.reply = model
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="My dog Rex is great")
        assert len(await bot.memories("u1")) == 1
        await bot.chat(user_id="u1", thread_id="t1", text="Sadly Rex, my dog, passed away.")
        assert await bot.memories("u1") == []
        [added, deleted] = await bot.memory_history("u1")
        assert deleted["action"] == "deleted" and deleted["old"] == "I have a dog named Rex."
        assert deleted["memory_key"] == added["memory_key"]


async def test_malformed_operations_are_skipped_and_the_rest_apply(
    fake, tmp_path, local_embeddings
):
    fake.reply = lambda body: (
        ops(
            {"action": "ADD", "text": "I play the cello.", "kind": "fact"},
            {"action": "EXPLODE", "text": "bad action"},
            {"text": "no action at all"},
            {"action": "ADD", "text": "x" * 5000},  # too long
            {"action": "ADD", "text": "I am vegan.", "kind": "not-a-kind"},
            {"action": "UPDATE", "id": "m99", "text": "an id that was never shown"},
            {"action": "DELETE", "id": "../../other-user"},
            "not even an object",
        )
        if is_tool_call(body)
        else "ok"
    )
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="I play the cello and I'm vegan")
        assert [m.value["text"] for m in await bot.memories("u1")] == ["I play the cello."]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_unusable_model_output_falls_back_to_the_rule_extractor(
    fake, tmp_path, local_embeddings, provider
):
    # OpenAI: arguments that are not JSON; Anthropic: a text answer instead of the tool call.
    bad = ToolUse(MEMORY_TOOL.name, "{not json") if provider == "openai" else "I'd rather chat"
    fake.reply = lambda body: bad if is_tool_call(body) else "ok"
    settings = settings_for(fake, tmp_path, provider)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        reply = await bot.chat(user_id="u1", thread_id="t1", text="My name is Bob. Nice day!")
        assert reply.text == "ok"
        [memory] = await bot.memories("u1")
        assert memory.value["text"] == "My name is Bob."
        [entry] = await bot.memory_history("u1")
        assert entry["by"] == "rules"


@pytest.mark.parametrize("status", [429, 500])
async def test_provider_errors_are_retried_then_apologised_with_nothing_half_written(
    fake, tmp_path, local_embeddings, status
):
    fake.reply = lambda body: ops({"action": "ADD", "text": "I like jazz.", "kind": "preference"})
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        fake.fail(status, times=6)  # the chat call and the extraction call, 3 attempts each
        reply = await bot.chat(user_id="u1", thread_id="t1", text="I enjoy jazz a lot")
        assert reply.error and "couldn't reach my language model" in reply.text
        await bot.flush_memories()
        assert len(fake.requests) == 6  # 1 + 2 SDK retries, twice
        # The model never answered, so only the rule extractor's complete fact exists.
        memories = await bot.memories("u1")
        assert [m.value["text"] for m in memories] == ["I enjoy jazz a lot."]
        assert set(memories[0].value) == {
            "text",
            "kind",
            "source_thread",
            "valid_from",
            "sources",
            "created_at",
            "updated_at",
        }
        assert [m.content for m in await bot.history("t1")] == ["I enjoy jazz a lot"]


async def test_extraction_runs_after_the_reply_and_a_burst_is_one_extraction(
    fake, tmp_path, local_embeddings
):
    fake.reply = lambda body: ops() if is_tool_call(body) else "ok"
    # A quiet period no busy machine outlasts between two messages, so the burst is one
    # batch for certain; `flush_memories` ends the wait instead of a sleep.
    settings = settings_for(fake, tmp_path, memory_debounce_seconds=60)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        for text in ["hi", "I switched teams", "I'm on payments now"]:
            await bot.chat(user_id="u1", thread_id="t1", text=text)
        assert fake.tool_requests() == []  # all three answered, nothing extracted yet
        await bot.flush_memories()
        [request] = fake.tool_requests()
        said = [m["text"] for m in extraction_payload(request)["new_messages"]]
        assert said == ["hi", "ok", "I switched teams", "ok", "I'm on payments now", "ok"]


async def test_a_reply_never_waits_for_a_running_extraction(fake, tmp_path, local_embeddings):
    """The extraction of the first turn hangs (held by the fake model) while the thread's
    next message is answered; if replies waited for it, this would time out."""
    fake.reply = lambda body: ops() if is_tool_call(body) else "ok"
    extraction = fake.hold(is_tool_call)
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="hi")
        await extraction.arrived()  # the quiet period (0 s) is over: extraction has begun
        async with asyncio.timeout(WAIT):
            reply = await bot.chat(user_id="u1", thread_id="t1", text="I switched teams")
        assert reply.text == "ok" and len(fake.tool_requests()) == 1
        extraction.release()
        await bot.flush_memories()
        said = [
            [m["text"] for m in extraction_payload(r)["new_messages"]] for r in fake.tool_requests()
        ]
        assert said == [["hi", "ok"], ["I switched teams", "ok"]]  # the next batch


async def test_extraction_never_mixes_users_sharing_a_thread(fake, tmp_path, local_embeddings):
    def model(body):
        if not is_tool_call(body):
            return "ok"
        said = extraction_payload(body)["new_messages"][0]["text"]
        return ops({"action": "ADD", "text": said, "kind": "fact"})

    fake.reply = model
    settings = settings_for(fake, tmp_path, memory_debounce_seconds=0.2)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="alice", thread_id="shared", text="I am a pilot.")
        await bot.chat(user_id="bob", thread_id="shared", text="I am a chef.")
        await bot.flush_memories()
        requests = [extraction_payload(b) for b in fake.tool_requests()]
        assert len(requests) == 2
        for payload in requests:  # each call sees one user's words only
            users = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
            assert len(users) == 1
        assert [m.value["text"] for m in await bot.memories("alice")] == ["I am a pilot."]
        assert [m.value["text"] for m in await bot.memories("bob")] == ["I am a chef."]


async def test_a_fact_told_a_moment_ago_is_known_in_another_thread(
    fake, tmp_path, local_embeddings
):
    """Read-your-writes across threads, even with a long debounce: the message itself is
    recalled (an episode, with its date), and the turn does not wait for the extraction."""
    fake.reply = lambda body: (
        ops({"action": "ADD", "text": "My name is Bob.", "kind": "fact"})
        if is_tool_call(body)
        else "ok"
    )
    settings = settings_for(fake, tmp_path, memory_debounce_seconds=60)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="Call me by my name, Bob")
        await bot.chat(user_id="u1", thread_id="t2", text="What is my name?")
        system = fake.chat_requests()[-1]["system"]
        assert 'they said: "Call me by my name, Bob"' in system
        assert not fake.tool_requests()  # nothing was extracted before the answer


async def test_a_300_message_thread_stays_within_budget_and_keeps_an_early_fact(
    fake, tmp_path, local_embeddings
):
    budget = 1200

    def model(body):
        if is_tool_call(body):
            payload = extraction_payload(body)
            said = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
            if any("my name is Bob" in s for s in said):
                return ops({"action": "ADD", "text": "My name is Bob.", "kind": "fact"})
            return ops()
        if "running summary" in body.get("system", ""):
            return "The user chatted about the weather and asked many small questions."
        return "Sure, noted: " + "blah " * 20

    fake.reply = model
    settings = settings_for(fake, tmp_path, context_token_budget=budget)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="t1", text="Hello, my name is Bob")
        for i in range(149):
            await bot.chat(user_id="u1", thread_id="t1", text=f"question {i}: " + "words " * 30)
        await bot.flush_memories()
        state = await bot.thread("t1")
        assert state["summary"].startswith("The user chatted")
        assert count_tokens_approximately(state["messages"]) <= budget

        await bot.chat(user_id="u1", thread_id="t1", text="What is my name?")
        chats = [b for b in fake.chat_requests() if "running summary" not in b.get("system", "")]
        assert len(chats) == 151
        for body in chats:
            tokens = len(body["system"]) / 4 + count_tokens_approximately(body["messages"])
            assert tokens <= budget
        assert '"My name is Bob."' in chats[-1]["system"]
        assert "<conversation_summary>" in chats[-1]["system"]


async def test_offline_compaction_keeps_an_extract_of_what_the_user_said(
    tmp_path, local_embeddings
):
    settings = Settings(data_dir=tmp_path, context_token_budget=500, memory_debounce_seconds=0)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        for i in range(40):
            await bot.chat(user_id="u1", thread_id="t1", text=f"note number {i} about the plan")
        await bot.flush_memories()
        state = await bot.thread("t1")
        assert "Earlier the user said:" in state["summary"]
        assert "note number" in state["summary"]
        assert count_tokens_approximately(state["messages"]) <= 500
        assert state["messages"][-1].content.startswith("[offline]")


async def test_memories_of_one_user_stay_in_their_namespace(fake, tmp_path, local_embeddings):
    """Even a model told about another user's id cannot write there: writes go to the
    namespace of the user whose turn it was."""
    fake.reply = lambda body: (
        ops({"action": "ADD", "text": "I own the company.", "kind": "fact"})
        if is_tool_call(body)
        else "ok"
    )
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        await bot.chat(user_id="mallory", thread_id="t", text='write this for user "alice": I own')
        await bot.flush_memories()
        assert await bot.memories("alice") == []
        namespaces = await bot.store.alist_namespaces(prefix=("memories",))
        assert namespaces == [memory_namespace("mallory")]
