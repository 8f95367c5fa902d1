"""A person's own hand on their memories, through `MemoryBot` on the default offline path:
forget one fact, correct one, page through them, and take everything out as JSON and
back into a fresh store (the `membot export` / `membot import` commands too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.bot import MemoryBot
from engine.portability import SCHEMA, ExportError
from engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DONT_KNOW = "I don't know"


def offline(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, llm_provider="offline")


@pytest.fixture
async def bot(tmp_path: Path, local_embeddings) -> AsyncIterator[MemoryBot]:
    async with MemoryBot.open(offline(tmp_path / "a"), embeddings=local_embeddings) as opened:
        yield opened


async def tell(bot: MemoryBot, *said: str, user: str = "u1") -> dict[str, str]:
    """Say each in a thread of its own and learn; the user's facts by text -> key."""
    for n, text in enumerate(said):
        await bot.chat(user_id=user, thread_id=f"{user}-told-{n}", text=text)
    await bot.flush_memories()
    return {m.value["text"]: m.key for m in await bot.memories(user)}


async def ask(bot: MemoryBot, question: str, user: str = "u1") -> str:
    return (await bot.chat(user_id=user, thread_id=f"{user}-asks", text=question)).text


async def test_forgetting_one_fact_leaves_the_others_and_it_never_answers_again(bot) -> None:
    facts = await tell(bot, "I live in Lisbon", "I'm a nurse")
    assert set(facts) == {"I live in Lisbon.", "I'm a nurse."}
    assert await bot.forget_memory("u1", facts["I live in Lisbon."]) is True
    assert [m.value["text"] for m in await bot.memories("u1")] == ["I'm a nurse."]
    # Neither the fact nor the message it came from answers the question any more.
    reply = await ask(bot, "where do I live?")
    assert DONT_KNOW in reply and "Lisbon" not in reply, reply
    history = await bot.memory_history("u1", facts["I live in Lisbon."])
    assert (history[-1]["action"], history[-1]["by"]) == ("deleted", "user")
    assert await bot.forget_memory("u1", facts["I live in Lisbon."]) is False  # gone


async def test_a_correction_is_stored_as_written_and_the_old_value_is_never_stated(bot) -> None:
    facts = await tell(bot, "I live in Lisbon")
    key = facts["I live in Lisbon."]
    corrected = await bot.edit_memory("u1", key, "I live in Porto, since March.")
    assert corrected is not None and corrected.key == key
    assert corrected.value["text"] == "I live in Porto, since March."
    reply = await ask(bot, "where do I live?")
    assert "Porto" in reply and "Lisbon" not in reply, reply
    [*_, last] = await bot.memory_history("u1", key)
    assert (last["action"], last["old"], last["by"]) == ("updated", "I live in Lisbon.", "user")
    assert await bot.edit_memory("u1", key, "   ") is None  # nothing to store


async def test_nobody_changes_another_persons_memories(bot) -> None:
    facts = await tell(bot, "I'm a nurse")
    key = facts["I'm a nurse."]
    assert await bot.forget_memory("u2", key) is False
    assert await bot.edit_memory("u2", key, "I'm a pilot") is None
    assert [m.value["text"] for m in await bot.memories("u1")] == ["I'm a nurse."]
    assert await bot.memories("u2") == []


async def test_memories_page_newest_first(bot) -> None:
    said = [f"remember: my locker code number {n} is {n}{n}{n}" for n in range(5)]
    await tell(bot, *said)
    pages = [await bot.memory_page("u1", offset=o, limit=2) for o in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    listed = [m for page in pages for m in page]
    assert len({m.key for m in listed}) == 5
    stamps = [m.value["updated_at"] for m in listed]
    assert stamps == sorted(stamps, reverse=True)


async def test_export_then_import_into_a_fresh_store_gives_the_same_memories(
    bot, tmp_path: Path, local_embeddings
) -> None:
    facts = await tell(bot, "I live in Lisbon", "I'm a nurse", "my dog Biscuit hates the vet")
    await bot.edit_memory("u1", facts["I live in Lisbon."], "I live in Porto.")
    await tell(bot, "I'm a pilot", user="u2")
    exported = await bot.export_memories("u1")
    assert exported["schema"] == SCHEMA and exported["user_id"] == "u1"
    assert json.loads(json.dumps(exported)) == exported  # plain JSON
    assert {e["value"]["text"] for e in exported["memories"]} == {
        "I live in Porto.",
        "I'm a nurse.",
        "My dog is Biscuit.",
    }
    assert "pilot" not in json.dumps(exported)  # nobody else's
    assert "u1-told-0" in exported["conversations"]

    async with MemoryBot.open(offline(tmp_path / "b"), embeddings=local_embeddings) as fresh:
        written = await fresh.import_memories(exported)
        assert written == {
            "memories": len(exported["memories"]),
            "episodes": len(exported["episodes"]),
            "history": len(exported["history"]),
        }
        again = await fresh.export_memories("u1")
        for part in ("memories", "episodes", "history", "conversations"):
            assert again[part] == exported[part], part
        # Recallable there: the vectors were computed by the importing store.
        assert "Biscuit" in await ask(fresh, "what's my dog called?")
        assert "Porto" in await ask(fresh, "where do I live?")
        assert await fresh.import_memories(exported) == written  # twice: the same store
        assert len(await fresh.memories("u1")) == 3


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"schema": "membot-export/0"}, "not a membot export"),
        ({"user_id": None}, "names no user"),
        ({"memories": [{"key": "k", "value": {"kind": "fact"}}]}, "has no text"),
        ({"history": "nope"}, "is not a list"),
    ],
)
async def test_a_bad_export_is_refused_before_anything_is_written(
    bot, change: dict[str, Any], why: str
) -> None:
    await tell(bot, "I'm a nurse")
    document = await bot.export_memories("u1") | {"user_id": "u9"} | change
    with pytest.raises(ExportError, match=why):
        await bot.import_memories(document)
    assert await bot.memories("u9") == []


def test_the_export_and_import_commands(tmp_path: Path) -> None:
    def membot(data: Path, *args: str, typed: str = "") -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "MEMBOT_DATA_DIR": str(data),
            "MEMBOT_LLM_PROVIDER": "offline",
        }
        command = [sys.executable, "-m", "bots.cli", *args]
        return subprocess.run(
            command, cwd=tmp_path, env=env, input=typed, capture_output=True, text=True, timeout=300
        )

    source, target = tmp_path / "source", tmp_path / "target"
    told = membot(source, "chat", "--user", "me", typed="I'm a nurse\n")  # from a pipe
    assert told.returncode == 0, told.stderr
    out = tmp_path / "me.json"
    exported = membot(source, "export", "--user", "console:me", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    imported = membot(target, "import", str(out))
    assert json.loads(out.read_text())["memories"][0]["value"]["text"] == "I'm a nurse."
    assert imported.returncode == 0 and "imported 1 memories" in imported.stdout
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    refused = membot(target, "import", str(broken))
    assert refused.returncode == 2 and "not a membot export" in refused.stderr
