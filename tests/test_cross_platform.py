"""One person on Slack and Discord, end to end: both adapters on one `MemoryBot` (as
`membot run` serves both when both are configured), each against its local fake. Told on
Slack, linked with `/link` on both sides, recalled on Discord; unlinked, new facts stay on
their own side."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.discord import APPLICATION_ID, GUILD_ID, MEMBER_ID, FakeDiscord
from tests.fakes.slack import FakeSlack, message
from tests.test_discord import Running, guilds, serving
from tests.test_slack import SECRET, Harness, next_response, running_adapter

CODE = re.compile(r"[0-9A-Z]{5}-[0-9A-Z]{5}")
ON_SLACK, ON_DISCORD = "slack:T1:U1", f"discord:{GUILD_ID}:{MEMBER_ID}"


@asynccontextmanager
async def both_platforms(tmp_path: Path, embeddings: Any) -> AsyncIterator[tuple[Harness, Running]]:
    settings = Settings(_env_file=None, data_dir=tmp_path / "bot", llm_provider="offline")
    async with (
        MemoryBot.open(settings, embeddings=embeddings) as bot,
        FakeSlack(signing_secret=SECRET) as slack,
        FakeDiscord(guilds=guilds()) as discord,
    ):
        with discord.patch_client():
            async with (
                running_adapter(Harness, "http", slack, tmp_path, embeddings, bot=bot) as on_slack,
                serving(discord, tmp_path, embeddings, bot=bot) as on_discord,
            ):
                yield on_slack, on_discord


async def ask_on_discord(run: Running, text: str) -> str:
    reply = await run.say(MEMBER_ID, f"<@{APPLICATION_ID}> {text}", mentions_bot=True)
    return str(reply["content"])


async def test_told_on_slack_recalled_on_discord_once_linked_and_not_after_unlinking(
    tmp_path: Path, local_embeddings
) -> None:
    async with both_platforms(tmp_path, local_embeddings) as (on_slack, on_discord):
        await on_slack.deliver_event(message("U1", "I live in Lisbon", channel="D1"))
        await on_slack.answers(1)
        await on_slack.bot.flush_memories()
        assert "Lisbon" not in await ask_on_discord(on_discord, "where do I live?")

        offered = await next_response(on_slack, on_slack.deliver_command("/link", user_id="U1"))
        code = CODE.search(offered["text"])
        assert code is not None, offered["text"]
        event = await on_discord.command("link", {"code": code.group()}, user=MEMBER_ID)
        linked = await on_discord.answer(event)
        assert linked["content"].startswith("Linked"), linked

        assert "Lisbon" in await ask_on_discord(on_discord, "where do I live?")
        # Told on Discord now: known on Slack at once.
        await ask_on_discord(on_discord, "I work as a nurse")
        await on_slack.bot.flush_memories()
        listed = await next_response(on_slack, on_slack.deliver_command("/memories", user_id="U1"))
        assert "I live in Lisbon." in listed["text"] and "nurse" in listed["text"]

        parted = await next_response(on_slack, on_slack.deliver_command("/unlink", user_id="U1"))
        assert "Unlinked" in parted["text"]
        await on_slack.deliver_event(message("U1", "I play the cello", channel="D1"))
        await on_slack.answers(2)
        await on_slack.bot.flush_memories()
        reply = await ask_on_discord(on_discord, "where do I live?")
        assert "Lisbon" not in reply, reply  # said on Slack: it went back with that account
        assert "cello" not in await ask_on_discord(on_discord, "what instrument do I play?")
        assert "nurse" in await ask_on_discord(on_discord, "what do I do for a living?")
        entries = [(e["action"], e["actor"]) for e in on_slack.bot.audit.entries()]
        assert entries == [("link", ON_DISCORD), ("unlink", ON_SLACK)]
