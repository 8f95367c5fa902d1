"""The inbox and the turn pipeline: each accepted message answered exactly once, across
redeliveries, replicas and a process that died at any step, and erased with the person.

The backends are checked against one contract (SQLite, Postgres, in-process). The
takeovers run the real Slack adapter (slack-bolt, slack_sdk) against the fake Slack: a
first bot accepts a message and stops at some step, as a killed process would; the next
bot on the same data directory finishes it, reusing what the first one had done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bots.slack import THINKING, SlackAdapter, message_key, thread_key, user_key
from engine.bot import MemoryBot
from engine.inbox import Inbound, MemoryInbox, PostgresInbox, SqliteInbox, open_inbox
from engine.settings import Settings
from engine.turns import LATE_NOTE
from tests.fakes.slack import FakeSlack, app_mention, fresh_ts
from tests.fakes.waits import eventually

SECRET = "test-signing-secret"
LEASE = 300.0


def inbound(key: str = "k1", *, user: str = "u1", at: datetime | None = None) -> Inbound:
    return Inbound(
        key=key,
        platform="test",
        user_id=user,
        thread_id="t1",
        text="my name is Bob",
        message_id=key,
        at=at or datetime.now(UTC),
        route={"channel": "C1"},
    )


@asynccontextmanager
async def backend(kind: str, tmp_path: Path, pg: str | None) -> AsyncIterator[Any]:
    if kind == "memory":
        yield MemoryInbox()
    elif kind == "sqlite":
        async with SqliteInbox.open(tmp_path / "inbox.sqlite") as inbox:
            yield inbox
    else:
        async with open_inbox(pg, tmp_path) as inbox:
            assert isinstance(inbox, PostgresInbox)
            yield inbox


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def maybe_pg(kind: str, request) -> str | None:
    return request.getfixturevalue("pg_url") if kind == "postgres" else None


async def test_a_key_is_accepted_once_and_done_keys_stay_claimed(kind, maybe_pg, tmp_path) -> None:
    async with backend(kind, tmp_path, maybe_pg) as inbox:
        assert await inbox.accept(inbound(), lease=LEASE)
        assert not await inbox.accept(inbound(), lease=LEASE)  # a redelivery
        assert await inbox.open_count() == 1
        await inbox.done("k1")
        assert await inbox.open_count() == 0
        assert not await inbox.accept(inbound(), lease=LEASE)  # redelivered after the answer


async def test_an_entry_whose_lease_ran_out_is_taken_over_once(kind, maybe_pg, tmp_path) -> None:
    async with backend(kind, tmp_path, maybe_pg) as inbox:
        assert await inbox.accept(inbound("old"), lease=0.0)
        assert await inbox.accept(inbound("busy"), lease=LEASE)
        taken, again = await asyncio.gather(
            inbox.orphans("test", lease=LEASE), inbox.orphans("test", lease=LEASE)
        )
        assert [i.key for i in taken + again] == ["old"]  # one taker; "busy" is still leased
        assert taken[0].text == "my name is Bob" and taken[0].route == {"channel": "C1"}
        assert await inbox.orphans("other-platform", lease=LEASE) == []


async def test_progress_and_reply_survive_a_takeover(kind, maybe_pg, tmp_path) -> None:
    async with backend(kind, tmp_path, maybe_pg) as inbox:
        first = inbound()
        await inbox.accept(first, lease=LEASE)
        moved = Inbound(
            **{
                **first.__dict__,
                "route": {"channel": "C1", "placeholder": "P"},
                "reply": "Hello Bob",
            }
        )
        await inbox.progress(moved, lease=0.0)
        [taken] = await inbox.orphans("test", lease=LEASE)
        assert taken.route["placeholder"] == "P" and taken.reply == "Hello Bob"


async def test_forget_erases_open_messages(kind, maybe_pg, tmp_path) -> None:
    async with backend(kind, tmp_path, maybe_pg) as inbox:
        await inbox.accept(inbound("a", user="u1"), lease=0.0)
        await inbox.accept(inbound("b", user="u2"), lease=0.0)
        assert await inbox.discard("u1") == 1
        assert [i.user_id for i in await inbox.orphans("test", lease=LEASE)] == ["u2"]


async def test_a_new_process_takes_over_the_embedded_inbox_at_once(tmp_path: Path) -> None:
    """Embedded: one process owns the data directory, so an earlier run's open entries are
    orphaned at start, lease or not (a restart answers them without waiting)."""
    async with SqliteInbox.open(tmp_path / "inbox.sqlite") as before:
        await before.accept(inbound(), lease=LEASE)
        assert await before.orphans("test", lease=LEASE) == []  # its own, still leased
    async with SqliteInbox.open(tmp_path / "inbox.sqlite") as after:
        assert [i.key for i in await after.orphans("test", lease=LEASE)] == ["k1"]


# -- takeovers through the Slack adapter ----------------------------------------------------


def settings_for(slack: FakeSlack, data_dir: Path, **extra: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        llm_provider="offline",
        slack_bot_token="xoxb-test",
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
        **extra,
    )


@asynccontextmanager
async def slack_bot(
    slack: FakeSlack, data_dir: Path, embeddings, settings: Settings | None = None, **extra: Any
) -> AsyncIterator[tuple[MemoryBot, str]]:
    """A bot with the Slack adapter serving HTTP (which starts the inbox sweep): on the
    offline model (`settings_for`), or on `settings`."""
    settings = settings or settings_for(slack, data_dir, **extra)
    async with MemoryBot.open(settings, embeddings=embeddings) as bot:
        adapter = SlackAdapter(bot, settings)
        runner = web.AppRunner(adapter.web_app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            yield bot, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        finally:
            await runner.cleanup()
            await adapter.aclose()


def accepted_mention(text: str, *, at: datetime | None = None) -> Inbound:
    """What the Slack adapter records for a mention in channel C1 (its own key format)."""
    ts = fresh_ts()
    return Inbound(
        key=message_key("T1", "C1", ts),
        platform="slack",
        user_id=user_key("T1", "U1"),
        thread_id=thread_key("T1", "C1", ts),
        text=text,
        message_id=ts,
        at=at or datetime.now(UTC),
        route={"channel": "C1", "reply_in": ts, "assistant": False},
    )


async def stop_after(data_dir: Path, slack: FakeSlack, embeddings, inbound: Inbound, step: str):
    """A first process that accepted `inbound` and died after `step`."""
    async with MemoryBot.open(settings_for(slack, data_dir), embeddings=embeddings) as bot:
        ticket = await bot.accept(inbound)
        assert ticket is not None
        if step in ("placeholder", "answer"):
            await ticket.note(placeholder="1700000000.000001")
        if step == "answer":
            await ticket.answer()
        # no done(): the process "dies" here (the entry stays open)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET) as fake:
        yield fake


async def settled(bot: MemoryBot) -> None:
    """Every accepted message is answered and closed."""

    async def none_open() -> bool:
        return await bot.inbox.open_count() == 0

    await eventually(none_open, what="every message closed")


@pytest.mark.parametrize("step", ["accepted", "placeholder", "answer"])
async def test_a_message_left_by_a_dead_process_is_answered_once(
    step: str, slack: FakeSlack, tmp_path: Path, local_embeddings
) -> None:
    said = accepted_mention("Hi! Remember: my name is Bob")
    await stop_after(tmp_path, slack, local_embeddings, said, step)
    assert slack.calls == []  # the first process posted nothing
    async with slack_bot(slack, tmp_path, local_embeddings) as (bot, url):
        [update] = await slack.wait_for("chat.update", timeout=60)
        assert "Bob" in update.args["text"]
        posted = slack.calls_to("chat.postMessage")
        if step == "accepted":  # no placeholder yet: one is posted, then replaced
            assert [p.args["text"] for p in posted] == [THINKING]
            assert update.args["ts"] != "1700000000.000001"
        else:  # the dead process's placeholder is reused: nothing left "Thinking…"
            assert posted == [] and update.args["ts"] == "1700000000.000001"
        # Slack redelivering the same message now is not answered again (sentinel: a
        # later message's answer arrives, and still only these answers were sent).
        await slack.post_event(
            url, app_mention("U1", "<@UBOT> hi again", channel="C1", ts=said.message_id)
        )
        sentinel = app_mention("U1", "<@UBOT> what is my name?", channel="C1")
        await slack.post_event(url, sentinel)
        updates = await slack.wait_for("chat.update", count=2, timeout=60)
        assert "Bob" in updates[1].args["text"]
        # Closed once delivered (just after Slack received the update, so waited for).
        await settled(bot)
    assert len(slack.calls_to("chat.update")) == 2


async def test_a_message_too_old_to_answer_gets_a_note(
    slack: FakeSlack, tmp_path: Path, local_embeddings
) -> None:
    old = accepted_mention("what's the plan?", at=datetime.now(UTC) - timedelta(hours=3))
    await stop_after(tmp_path, slack, local_embeddings, old, "placeholder")
    async with slack_bot(slack, tmp_path, local_embeddings, inbox_reanswer_seconds=3600):
        [update] = await slack.wait_for("chat.update", timeout=60)
    note = LATE_NOTE.split("{when}")[0]
    assert update.args["text"].startswith(note) and "Please send it again" in update.args["text"]


async def test_a_rate_limited_answer_is_delivered_once(
    slack: FakeSlack, tmp_path: Path, local_embeddings
) -> None:
    """One 429 on the answer (Retry-After): slack_sdk's retry handler waits and sends it
    again; the person sees one answer, no apology."""
    slack.fail("chat.update", error="ratelimited", status=429)
    async with slack_bot(slack, tmp_path, local_embeddings) as (_, url):
        await slack.post_event(url, app_mention("U1", "<@UBOT> my name is Bob", channel="C1"))
        updates = await slack.wait_for("chat.update", count=2, timeout=60)  # the 429, the retry
        assert updates[0].args == updates[1].args and "Bob" in updates[1].args["text"]
        sentinel = app_mention("U1", "<@UBOT> what is my name?", channel="C1")
        await slack.post_event(url, sentinel)
        await slack.wait_for("chat.update", count=3, timeout=60)
    assert len(slack.calls_to("chat.postMessage")) == 2  # one placeholder per message


class DownInbox(MemoryInbox):
    """The inbox's database gone (an injected outage, as FlakyStore does for the store)."""

    async def accept(self, inbound: Inbound, *, lease: float) -> bool:
        raise ConnectionError("inbox database unreachable")

    async def progress(self, inbound: Inbound, *, lease: float) -> None:
        raise ConnectionError("inbox database unreachable")

    async def done(self, key: str) -> None:
        raise ConnectionError("inbox database unreachable")


async def test_with_the_inbox_down_messages_are_still_answered(
    tmp_path: Path, local_embeddings
) -> None:
    async with MemoryBot.open(
        Settings(data_dir=tmp_path, llm_provider="offline"), embeddings=local_embeddings
    ) as bot:
        bot.inbox = DownInbox()
        ticket = await bot.accept(inbound())
        assert ticket is not None
        await ticket.note(placeholder="P")
        reply = await ticket.answer()
        await ticket.done()
        assert "Bob" in reply.text and not reply.error
        assert await bot.drain(grace=0) == 0  # nothing left in flight
