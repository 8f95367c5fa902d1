"""The seed scenario, end to end: directly through the workflow, through MemoryBot,
and across a process restart. Real store (Qdrant Edge on disk), real checkpointer
(SQLite file), real offline sentence model; the chat model is the offline one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from engine.bot import MemoryBot
from engine.memory.records import EPISODES_ONLY, FACTS_ONLY
from engine.models import OfflineChat
from engine.settings import Settings
from engine.store import EdgeStore
from engine.store.factory import index_config
from engine.workflow import build_chat_workflow

ROOT = Path(__file__).resolve().parents[1]


def config(thread: str, user: str) -> dict:
    return {"configurable": {"thread_id": thread, "user_id": user}}


async def test_seed_directly_through_the_workflow(tmp_path: Path, local_embeddings) -> None:
    embedder, dims = local_embeddings
    store = EdgeStore.open(tmp_path / "qdrant", index=index_config(embedder, dims))
    async with store, AsyncSqliteSaver.from_conn_string(str(tmp_path / "cp.sqlite")) as saver:
        chat = build_chat_workflow(model=OfflineChat(), checkpointer=saver, store=store)

        first = await chat.ainvoke({"text": "Hi! Remember: my name is Bob"}, config("1", "1"))
        assert isinstance(first, AIMessage)
        answer = await chat.ainvoke({"text": "what is my name?"}, config("2", "1"))
        assert "Bob" in answer.content
        assert answer.response_metadata["offline"] is True
        other = await chat.ainvoke({"text": "what is my name?"}, config("3", "2"))
        assert "Bob" not in other.content

        memories = await store.asearch(("memories", "1"), filter=FACTS_ONLY)
        assert [m.value["text"] for m in memories] == ["My name is Bob."]
        # Every message is kept as an episode; the question as one that is never recalled.
        episodes = await store.asearch(("memories", "1"), filter=EPISODES_ONLY)
        assert sorted(e.value["kind"] for e in episodes) == ["episode", "question"]
        assert await store.asearch(("memories", "2"), filter=FACTS_ONLY) == []

        # `previous` is the thread's history: thread 1 holds its own two messages only.
        state = await saver.aget_tuple({"configurable": {"thread_id": "1"}})
        saved = state.checkpoint["channel_values"]["__previous__"]["messages"]
        assert [type(m) for m in saved] == [HumanMessage, AIMessage]
        assert saved[0].content == "Hi! Remember: my name is Bob"


async def test_seed_with_conversations_in_postgres(pg_url: str, tmp_path: Path, local_embeddings):
    """The scale path's checkpointer: same scenario, conversations in a real Postgres."""
    settings = Settings(data_dir=tmp_path, checkpoint_url=pg_url)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        assert isinstance(bot.checkpointer, AsyncPostgresSaver)
        await bot.chat(user_id="1", thread_id="1", text="Hi! Remember: my name is Bob")
        reply = await bot.chat(user_id="1", thread_id="2", text="what is my name?")
        assert "Bob" in reply.text and reply.offline
        other = await bot.chat(user_id="2", thread_id="3", text="what is my name?")
        assert "Bob" not in other.text
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:  # a restart
        history = await bot.history("1")
        assert history[0].content == "Hi! Remember: my name is Bob"
        assert "Bob" in (await bot.chat(user_id="1", thread_id="4", text="my name?")).text
    assert not (tmp_path / "checkpoints.sqlite").exists()


async def test_seed_through_memory_bot(tmp_path: Path, local_embeddings) -> None:
    async with MemoryBot.open(Settings(data_dir=tmp_path), embeddings=local_embeddings) as bot:
        await bot.chat(user_id="1", thread_id="1", text="Hi! Remember: my name is Bob")
        reply = await bot.chat(user_id="1", thread_id="2", text="what is my name?")
        assert "Bob" in reply.text and reply.offline
        other = await bot.chat(user_id="2", thread_id="3", text="what is my name?")
        assert "Bob" not in other.text
        assert [i.value["text"] for i in await bot.memories("1")] == ["My name is Bob."]
        # Saying it again stores it once.
        await bot.chat(user_id="1", thread_id="4", text="my name is Bob")
        assert len(await bot.memories("1")) == 1


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_seed_survives_a_restart(tmp_path: Path) -> None:
    run_python(
        f"""
        import asyncio
        from engine.bot import MemoryBot
        from engine.settings import Settings

        async def main():
            async with MemoryBot.open(Settings(data_dir={str(tmp_path)!r})) as bot:
                await bot.chat(user_id="1", thread_id="1", text="Hi! Remember: my name is Bob")
        asyncio.run(main())
        """
    )
    out = run_python(
        f"""
        import asyncio
        from engine.bot import MemoryBot
        from engine.settings import Settings

        async def main():
            async with MemoryBot.open(Settings(data_dir={str(tmp_path)!r})) as bot:
                history = await bot.history("1")
                print("history:", [m.content for m in history][0])
                print("count:", len(history))
                memories = await bot.memories("1")
                print("memory:", [i.value["text"] for i in memories])
                reply = await bot.chat(user_id="1", thread_id="2", text="what is my name?")
                print("answer:", reply.text)
                reply = await bot.chat(user_id="2", thread_id="3", text="what is my name?")
                print("other:", reply.text)
        asyncio.run(main())
        """
    )
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["history"] == "Hi! Remember: my name is Bob"
    assert lines["count"] == "2"
    assert lines["memory"] == "['My name is Bob.']"
    assert "Bob" in lines["answer"]
    assert "Bob" not in lines["other"]
