"""How soon a streamed answer shows, and what it costs in platform calls, per platform.

A paced fake model behind the real vendor SDK (tests/fakes/llm.py: first piece after
400 ms, then 40 pieces a second, answers of 400 pieces — one word each) answers through
the real adapters against their fake platforms: Slack (slack-bolt in HTTP mode, the fake
Slack with streaming on) and Discord (discord.py against the fake gateway + REST), with
the default engine (`MemoryBot`, local embedder, embedded store) in between. `--replies`
messages go in at once, each in a channel of its own (after one warm-up answer).

Per reply:
- time to first visible text: from sending the message to the first platform call that
  carries answer text (a stream start/append, a message or an edit that is not the
  placeholder); target p50/p95 ≤ the model's first piece + 300 ms;
- platform calls: every message post/update/delete and stream start/append/stop in its
  channel; target ≤ one per second of generation + 2 (start, stop);
- the final text: the bot's messages in the channel, in order, equal to what the model
  streamed, byte for byte (but for the whitespace at a break between two messages, which
  Discord trims).

The model's own first piece (400 ms) and whole generation (~10 s, what a reply sent whole
would first show) are the baseline of the same run.

    .venv/bin/python bench/stream_bench.py [--replies 8] [--platforms slack,discord] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import header, table, target
from bots.discord import DiscordAdapter
from bots.slack import THINKING, SlackAdapter
from engine.bot import MemoryBot
from tests.fakes.discord import CHANNEL_ID, MEMBER_ID, Channel, FakeDiscord, default_guilds
from tests.fakes.llm import FakeLLM, ToolUse
from tests.fakes.slack import FakeSlack, app_mention, streamed_text
from tests.fakes.waits import eventually
from tests.llm_settings import fake_llm_settings

FIRST_TOKEN = 0.4
TOKENS_PER_SECOND = 40
PIECES = 400
SLACK_SECRET = "bench-secret"
WORDS = (
    "tea kettle water leaves steep minutes flavour morning garden window letter river "
    "autumn bread salt lemon honey chair table lamp"
).split()
ANSWER = " ".join(
    WORDS[(n * 7) % len(WORDS)] + ("." if n % 12 == 11 else "") for n in range(PIECES)
)
GENERATION = FIRST_TOKEN + (PIECES - 1) / TOKENS_PER_SECOND


@dataclass
class Measured:
    first_text: float  # seconds from the message to the first visible answer text
    calls: int  # platform calls that made or changed the answer's messages
    exact: bool  # the messages, joined, are the model's output


def shown_exactly(parts: list[str], text: str) -> bool:
    """The messages, in order, are `text` byte for byte, except for whitespace where one
    message ends and the next begins (Discord trims a message's content, so a break at a
    space or a blank line cannot show it)."""
    at = 0
    for part in parts:
        while at < len(text) and text[at].isspace() and not text.startswith(part, at):
            at += 1
        if not text.startswith(part, at):
            return False
        at += len(part)
    return text[at:].strip() == ""


def model_reply(body: dict[str, Any]) -> str | ToolUse:
    if body.get("tools"):  # memory learning: nothing to store
        return ToolUse(body["tools"][0]["name"], {"operations": []})
    return ANSWER


# -- Slack -------------------------------------------------------------------------------

SLACK_WRITES = (
    "chat.postMessage",
    "chat.update",
    "chat.delete",
    "chat.startStream",
    "chat.appendStream",
    "chat.stopStream",
)


def _slack_text(method: str, args: dict[str, Any]) -> str:
    if method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        return streamed_text(args)
    if method in ("chat.postMessage", "chat.update"):
        text = str(args.get("text") or "")
        return "" if text == THINKING else text
    return ""


@asynccontextmanager
async def slack_rig(llm: FakeLLM, data: Path) -> AsyncIterator[Callable[[str], Any]]:
    """A bot with the Slack adapter in HTTP mode against the fake Slack; yields a function
    that answers one mention in a new channel and measures it."""
    async with FakeSlack(signing_secret=SLACK_SECRET, streaming=True) as slack:
        settings = fake_llm_settings(
            llm,
            data,
            "anthropic",
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SLACK_SECRET,
            slack_api_url=slack.api_url,
        )
        async with MemoryBot.open(settings) as bot:
            adapter = SlackAdapter(bot, settings)
            runner = web.AppRunner(adapter.web_app())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"

            async def one(channel: str) -> Measured:
                event = app_mention("U1", "<@UBOT> tell me about tea", channel=channel)
                sent = time.perf_counter()
                delivered = await slack.post_event(url, event)
                assert delivered.status == 200
                await slack.wait_for(
                    "chat.stopStream", where=lambda c: c.args.get("channel") == channel, timeout=120
                )
                ours = [
                    c
                    for c in slack.calls
                    if c.method in SLACK_WRITES and c.args.get("channel") == channel
                ]
                first = min(c.at for c in ours if _slack_text(c.method, c.args))
                shown = [m.body for m in slack.bot_messages(channel)]
                return Measured(first - sent, len(ours), shown_exactly(shown, ANSWER))

            try:
                yield one
            finally:
                await runner.cleanup()
                await adapter.aclose()


# -- Discord -----------------------------------------------------------------------------

DISCORD_CHANNELS = 64  # a channel per reply: Discord's write limits are per channel


@asynccontextmanager
async def discord_rig(llm: FakeLLM, data: Path) -> AsyncIterator[Callable[[str], Any]]:
    """A bot with the Discord adapter against the fake gateway + REST; yields a function
    that answers one mention in a channel of its own and measures it."""
    channels = [Channel(CHANNEL_ID + 100 + n, f"c{n}") for n in range(DISCORD_CHANNELS)]
    (guild,) = default_guilds()
    guild.channels.extend(channels)
    free = iter(c.id for c in channels)
    async with FakeDiscord(guilds=[guild]) as fake:
        settings = fake_llm_settings(llm, data, "anthropic", discord_token=fake.token)
        with fake.patch_client():
            async with MemoryBot.open(settings) as bot:
                adapter = DiscordAdapter(bot, settings, guild_ready_timeout=0.05)
                await adapter.client.login(fake.token)
                connection = asyncio.create_task(adapter.client.connect())
                await asyncio.wait_for(adapter.client.wait_until_ready(), 120)

                async def none_open() -> bool:
                    return await bot.inbox.open_count() == 0

                async def one(_: str) -> Measured:
                    channel = next(free)
                    mention = fake.message_create(
                        MEMBER_ID, "tell me about tea", channel_id=channel, mentions_bot=True
                    )
                    sent = time.perf_counter()
                    await fake.dispatch("MESSAGE_CREATE", mention)
                    await fake.wait_for_reply(mention, timeout=120)
                    await eventually(none_open, what="every answer closed, after its last edit")
                    path = f"/channels/{channel}/messages"
                    ours = [r for r in fake.revisions if r.call.path.startswith(path)]
                    first = min(r.call.at for r in ours if r.content)
                    final = {r.message_id: r.content for r in ours}  # the last version wins
                    shown = [final[m] for m in sorted(final) if final[m]]
                    return Measured(first - sent, len(ours), shown_exactly(shown, ANSWER))

                try:
                    yield one
                finally:
                    await adapter.client.close()
                    await asyncio.wait_for(connection, 60)


# -- the run -----------------------------------------------------------------------------

RIGS = {"slack": slack_rig, "discord": discord_rig}


async def measure(platform: str, replies: int) -> list[Measured]:
    async with FakeLLM(reply=model_reply) as llm:
        llm.first_token_delay, llm.tokens_per_second = FIRST_TOKEN, TOKENS_PER_SECOND
        with tempfile.TemporaryDirectory() as data:
            async with RIGS[platform](llm, Path(data)) as one:
                await one("CWARMUP")
                return await asyncio.gather(*(one(f"C{n}") for n in range(replies)))


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(results: dict[str, list[Measured]]) -> None:
    print(header("Streamed answers: first visible text and platform calls"))
    limit_first = FIRST_TOKEN + 0.3
    limit_calls = int(GENERATION) + 2
    rows = []
    for platform, measured in results.items():
        firsts = [m.first_text for m in measured]
        calls = [m.calls for m in measured]
        rows.append(
            [
                platform,
                len(measured),
                f"{quantile(firsts, 0.5):.2f} / {quantile(firsts, 0.95):.2f}",
                f"{statistics.median(calls):.0f} / {max(calls)}",
                f"{sum(m.exact for m in measured)}/{len(measured)}",
            ]
        )
    columns = [
        "platform",
        "replies",
        "first text p50 / p95 (s)",
        "calls per reply p50 / max",
        "final text = model output",
    ]
    print(table(columns, rows))
    print(
        f"\nModel, same run: first piece {FIRST_TOKEN:.2f} s, whole answer {GENERATION:.1f} s "
        f"({PIECES} pieces at {TOKENS_PER_SECOND}/s).\n"
    )
    for platform, measured in results.items():
        firsts = [m.first_text for m in measured]
        lines = [
            target(
                f"{platform}: first text p95 (s)",
                quantile(firsts, 0.95),
                limit_first,
                at_least=False,
            ),
            target(
                f"{platform}: platform calls per reply, max",
                max(m.calls for m in measured),
                limit_calls,
                at_least=False,
                fmt="{:.0f}",
            ),
            target(
                f"{platform}: replies equal to the model's output",
                sum(m.exact for m in measured),
                len(measured),
                fmt="{:.0f}",
            ),
        ]
        for line, _ in lines:
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=8)
    parser.add_argument("--platforms", default=",".join(RIGS))
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke run: 2 replies, the model 4x faster"
    )
    args = parser.parse_args()
    if args.quick:
        global TOKENS_PER_SECOND, GENERATION
        args.replies, TOKENS_PER_SECOND = 2, 4 * TOKENS_PER_SECOND
        GENERATION = FIRST_TOKEN + (PIECES - 1) / TOKENS_PER_SECOND
    platforms = [p for p in args.platforms.split(",") if p]
    results = {p: asyncio.run(measure(p, args.replies)) for p in platforms}
    report(results)


if __name__ == "__main__":
    main()
