"""A person's own hand on their memories from the console: `/memories` numbers them
(newest first, with kind and date), `/forget N` and `/edit N TEXT` act on the number shown,
`/export PATH` writes everything as JSON. Driven through `ConsoleSession.handle` with the
offline model (no terminal needed: these are commands, not typing), and checked against
the bot itself, not only against what the console says.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from bots import console
from bots.console import HELP, ConsoleSession, user_id
from engine.bot import MemoryBot
from engine.portability import SCHEMA
from engine.settings import Settings

NUMBERED = re.compile(r"^\s+(\d+)\. (.+) \(([^,()]+), ([^()]+)\)$", re.MULTILINE)
ME = user_id("me")


@pytest.fixture
async def bot(tmp_path: Path, local_embeddings) -> AsyncIterator[MemoryBot]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", llm_provider="offline")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as opened:
        yield opened


@pytest.fixture
def session(bot: MemoryBot) -> ConsoleSession:
    return ConsoleSession(bot=bot, user="me", thread="main", out=io.StringIO())


async def run(session: ConsoleSession, line: str) -> str:
    """Handle `line` as typed; what the console printed for it."""
    out = session.out
    assert isinstance(out, io.StringIO)
    start = len(out.getvalue())
    assert await session.handle(line) is True
    return out.getvalue()[start:]


async def tell(session: ConsoleSession, *said: str) -> None:
    """Say each line to the bot and let it learn from them."""
    for line in said:
        assert "bot: " in await run(session, line)
    await session.bot.flush_memories()


async def texts(bot: MemoryBot) -> list[str]:
    return [m.value["text"] for m in await bot.memories(ME)]


async def listed(session: ConsoleSession) -> dict[str, int]:
    """`/memories`, parsed: each memory's text -> its number (checked to be 1, 2, ...)."""
    lines = NUMBERED.findall(await run(session, "/memories"))
    assert [int(n) for n, *_ in lines] == list(range(1, len(lines) + 1))
    return {text: int(n) for n, text, *_ in lines}


async def test_memories_are_numbered_newest_first_with_kind_and_date(session) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    shown = NUMBERED.findall(await run(session, "/memories"))
    items = await session.bot.memories(ME)
    assert len(shown) == 2 and len(items) == 2
    for (number, text, kind, day), item, expected in zip(shown, items, ("1", "2"), strict=True):
        stamp = datetime.fromisoformat(item.value["updated_at"])
        assert (number, text, kind) == (expected, item.value["text"], item.value["kind"])
        assert day == f"{stamp.day} {stamp:%b}"  # e.g. "27 Nov"
    assert {text for _, text, *_ in shown} == {"I live in Lisbon.", "I'm a nurse."}
    stamps = [item.value["updated_at"] for item in items]
    assert stamps == sorted(stamps, reverse=True)  # newest first


async def test_forget_n_erases_exactly_that_memory_and_numbers_stay_put(session) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    numbers = await listed(session)
    said = await run(session, f"/forget {numbers['I live in Lisbon.']}")
    assert "Forgot memory" in said and "Lisbon" in said
    assert await texts(session.bot) == ["I'm a nurse."]
    # The numbers are the list's as shown: the other one keeps its number.
    said = await run(session, f"/forget {numbers['I live in Lisbon.']}")
    assert "already gone" in said
    assert await texts(session.bot) == ["I'm a nurse."]
    nurse = numbers["I'm a nurse."]
    await run(session, f"/forget {nurse}")
    assert await texts(session.bot) == []


async def test_edit_n_stores_the_correction_as_written(session) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    numbers = await listed(session)
    assert numbers["I'm a nurse."] == 1  # told last, so listed first
    said = await run(session, "/edit 1 I'm a pilot")
    assert "I'm a pilot" in said
    remembered = await texts(session.bot)
    assert sorted(remembered) == ["I live in Lisbon.", "I'm a pilot"]
    assert not any("nurse" in text for text in remembered)
    assert "I'm a pilot" in await listed(session)


async def test_bad_numbers_say_why_and_change_nothing(session) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    before = sorted((m.key, m.value["text"]) for m in await session.bot.memories(ME))
    assert "/memories" in await run(session, "/forget 1")  # no list shown yet
    await listed(session)
    assert "no memory 9" in await run(session, "/forget 9")
    assert "no memory 0" in await run(session, "/edit 0 I'm a pilot")
    assert "Usage: /edit N TEXT" in await run(session, "/edit x y")
    assert "Usage: /forget N" in await run(session, "/forget first")
    assert "Usage: /forget N" in await run(session, "/forget ²")  # a digit, not a number
    assert "Usage: /edit N TEXT" in await run(session, "/edit 1")  # no text
    await run(session, "/user other")
    assert "/memories" in await run(session, "/forget 1")  # that list was me's
    await run(session, "/user me")
    after = sorted((m.key, m.value["text"]) for m in await session.bot.memories(ME))
    assert after == before


async def test_plain_forget_still_erases_everything(session) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    await listed(session)
    assert "Forgot 2 memories about me" in await run(session, "/forget")
    assert await texts(session.bot) == []
    assert "/memories" in await run(session, "/forget 1")  # the old list is void


async def test_a_long_list_is_shown_whole(session, monkeypatch) -> None:
    monkeypatch.setattr(console, "MEMORY_PAGE", 2)  # several pages for five memories
    await tell(session, *(f"remember: my locker code number {n} is {n}{n}{n}" for n in range(5)))
    numbers = await listed(session)
    assert len(numbers) == 5
    assert set(numbers) == set(await texts(session.bot))


async def test_export_writes_the_json_document(session, tmp_path: Path, monkeypatch) -> None:
    await tell(session, "I live in Lisbon", "I'm a nurse")
    monkeypatch.setenv("HOME", str(tmp_path))  # so ~ is tmp_path
    said = await run(session, "/export ~/me.json")
    assert "Exported 2 memories" in said
    document = json.loads((tmp_path / "me.json").read_text(encoding="utf-8"))
    assert document["schema"] == SCHEMA == "membot-export/1"
    assert document["user_id"] == ME
    assert {m["value"]["text"] for m in document["memories"]} == set(await texts(session.bot))
    assert {m["key"] for m in document["memories"]} == {
        m.key for m in await session.bot.memories(ME)
    }


async def test_export_to_an_unwritable_place_says_so(session, tmp_path: Path) -> None:
    await tell(session, "I'm a nurse")
    target = tmp_path / "no such dir" / "me.json"
    said = await run(session, f"/export {target}")
    assert "Could not write" in said and str(target) in said
    assert not target.exists()
    assert "Usage: /export PATH" in await run(session, "/export")
    assert await texts(session.bot) == ["I'm a nurse."]  # and the console goes on


async def test_help_lists_the_new_commands() -> None:
    for command in ("/forget N", "/edit N TEXT", "/export PATH", "/memories", "/forget "):
        assert command in HELP


async def test_link_gives_a_code_another_account_can_use_and_unlink_parts_them(
    session, bot: MemoryBot
) -> None:
    await tell(session, "I live in Lisbon")
    offered = await run(session, "/link")
    code = re.search(r"code: ([0-9A-Z]{5}-[0-9A-Z]{5})", offered)
    assert code and "10 minutes" in offered, offered
    assert (await bot.link("slack:T1:U1", code[1])).ok
    assert [m.value["text"] for m in await bot.memories("slack:T1:U1")] == ["I live in Lisbon."]
    assert "isn't valid" in await run(session, "/link ABCDE-FGHJK")
    assert "Unlinked" in await run(session, "/unlink")
    assert "isn't linked" in await run(session, "/unlink")
    assert await bot.memories("slack:T1:U1") == []
    assert "/link [CODE]" in HELP and "/unlink" in HELP
