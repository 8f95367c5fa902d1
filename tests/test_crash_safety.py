"""kill -9 in the middle of a turn or of memory writes, then restart: the store reopens
without repair, the thread's checkpoint is consistent, no memory is half-written.

The bot runs as a real child process (the real embedded store and SQLite files on disk);
the "model" is the local fake Anthropic API in this process, so the test knows exactly
when a turn is in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage

from engine.bot import MemoryBot
from engine.memory.manager import MEMORY_TOOL
from engine.settings import Settings
from tests.fakes.llm import FakeLLM, ToolUse
from tests.fakes.waits import WAIT
from tests.llm_settings import fake_llm_settings

ROOT = Path(__file__).resolve().parents[1]


def spawn(code: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def env_for(data_dir: Path, fake: FakeLLM | None = None) -> dict[str, str]:
    env = {"MEMBOT_DATA_DIR": str(data_dir), "MEMBOT_MEMORY_DEBOUNCE_SECONDS": "0"}
    if fake is not None:
        env |= {
            "MEMBOT_LLM_PROVIDER": "anthropic",
            "ANTHROPIC_API_KEY": "test",
            "ANTHROPIC_BASE_URL": fake.anthropic_url,
        }
    return env


async def wait_until(condition, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(WAIT)
    assert child.returncode == -signal.SIGKILL


async def test_killed_while_the_model_is_answering(tmp_path, local_embeddings) -> None:
    async with FakeLLM(lambda body: "an answer") as fake:
        answer = fake.hold(lambda body: True)  # the turn hangs in the model call till the kill
        child = spawn(
            """
            import asyncio
            from engine.bot import MemoryBot
            async def main():
                async with MemoryBot.open() as bot:
                    await bot.chat(user_id="u1", thread_id="t1", text="first message")
            asyncio.run(main())
            """,
            env_for(tmp_path, fake),
        )
        try:
            await wait_until(lambda: fake.chat_requests())
        finally:
            kill(child)
        answer.release()
        settings = fake_llm_settings(fake, tmp_path)
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            # The turn never finished, so it is absent, not half there; the user's resend
            # (or Slack's retry) is answered normally.
            assert await bot.history("t1") == []
            reply = await bot.chat(user_id="u1", thread_id="t1", text="first message")
            assert reply.text == "an answer" and not reply.error
            history = await bot.history("t1")
            assert [type(m) for m in history] == [HumanMessage, AIMessage]


WRITER = """
import asyncio, sys
from engine.bot import MemoryBot
async def main():
    async with MemoryBot.open() as bot:
        for n in range(100_000):
            await bot.remember(f"u{n % 7}", f"I have a fact number {n}")
            print(n, flush=True)
asyncio.run(main())
"""


async def test_killed_during_memory_writes(tmp_path, local_embeddings) -> None:
    for round_ in range(3):  # three kills at different points of the write stream
        child = spawn(WRITER, env_for(tmp_path))
        assert child.stdout is not None
        written = -1
        for line in child.stdout:
            written = int(line)
            if written >= 20 + 15 * round_:
                break
        kill(child)
        # Reopens without repair (same process type, same files), nothing half-written.
        async with MemoryBot.open(Settings(data_dir=tmp_path), embeddings=local_embeddings) as bot:
            for user in (f"u{n}" for n in range(7)):
                memories = await bot.memories(user, limit=10_000)
                logged = {h["memory_key"] for h in await bot.memory_history(user)}
                for memory in memories:
                    assert set(memory.value) - {"slot"} == {
                        "text",
                        "kind",
                        "source_thread",
                        "valid_from",
                        "sources",
                        "created_at",
                        "updated_at",
                    }
                    assert memory.value["text"].startswith("I have a fact number ")
                    assert memory.key in logged  # written with its history entry
            total = 0
            for n in range(7):
                total += len(await bot.memories(f"u{n}", limit=10_000))
            assert total >= written  # every acknowledged write survived (kill -9, not power)


async def test_killed_while_learning_a_memory(tmp_path, local_embeddings) -> None:
    """The reply went out, the background extraction was in flight: after the restart the
    journal still holds the turn and the memory is learnt."""

    def model(body):
        if not body.get("tools"):
            return "Nice to meet you."
        return ToolUse(
            MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": "My name is Bob."}]}
        )

    async with FakeLLM(model) as fake:
        extraction = fake.hold(lambda body: bool(body.get("tools")))  # in flight till the kill
        child = spawn(
            """
            import asyncio
            from engine.bot import MemoryBot
            async def main():
                async with MemoryBot.open() as bot:
                    reply = await bot.chat(user_id="u1", thread_id="t1", text="my name is Bob")
                    print(reply.text, flush=True)
                    await bot.flush_memories()
            asyncio.run(main())
            """,
            env_for(tmp_path, fake),
        )
        try:
            await wait_until(lambda: fake.tool_requests())
        finally:
            kill(child)
        assert child.stdout is not None and child.stdout.read() == "Nice to meet you.\n"
        extraction.release()
        settings = fake_llm_settings(fake, tmp_path)
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            assert len(await bot.history("t1")) == 2  # the turn itself was complete
            assert await bot.journal.size() == 1
            assert await bot.retry_journal(older_than=0) == 1
            assert [m.value["text"] for m in await bot.memories("u1")] == ["My name is Bob."]
