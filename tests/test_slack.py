"""The Slack adapter end to end: real slack-bolt and slack_sdk against a local fake
Slack, in HTTP mode (signed requests) and Socket Mode (websocket envelopes)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bots.slack import FILES_ONLY, SlackAdapter
from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.slack import Call, FakeSlack, app_mention, message

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-signing-secret"
SENTINEL = "DSENTINEL"  # the DM channel of `Harness.sentinel`


@dataclass
class Harness:
    """One running adapter and the ways the fake Slack can reach it."""

    slack: FakeSlack
    bot: MemoryBot
    adapter: SlackAdapter
    mode: str
    deliver_event: Callable[..., Awaitable[Any]]
    deliver_command: Callable[..., Awaitable[Any]]
    deliver_action: Callable[..., Awaitable[Any]]

    async def answers(self, count: int) -> list[str]:
        """Texts of the bot's final answers (placeholders edited into answers)."""
        updates = await self.slack.wait_for("chat.update", count=count)
        return [call.args["text"] for call in updates]

    async def sentinel(self) -> None:
        """Deliver a DM that must be answered, and wait for its answer: what the events
        delivered before it were going to post has been posted by then, so counting the
        calls afterwards shows what did not happen (no sleeping and hoping)."""
        await self.deliver_event(message("U2", "are you there?", channel=SENTINEL))
        await self.slack.wait_for("chat.update", where=lambda c: c.args["channel"] == SENTINEL)

    def calls(self, method: str) -> list[Call]:
        """Calls of `method`, the sentinel's left out."""
        return [c for c in self.slack.calls_to(method) if c.args.get("channel") != SENTINEL]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET) as fake:
        for user, admin in (("U1", False), ("U2", False), ("UADMIN", True)):
            fake.users[user] = {"id": user, "is_admin": admin, "is_owner": False, "team_id": "T1"}
        yield fake


H = TypeVar("H", bound="Harness")


@asynccontextmanager
async def running_adapter(
    kind: type[H],
    mode: str,
    slack: FakeSlack,
    data_dir: Path,
    embeddings: Any,
    bot: MemoryBot | None = None,
) -> AsyncIterator[H]:
    """The adapter on the offline bot, reached by `slack` in `mode` ("http": signed
    requests to its web app; "socket": Socket Mode envelopes), as a `kind` harness. With
    `bot`, on that one (shared with another platform's adapter, as `membot run` does)."""
    settings = Settings(
        data_dir=data_dir,
        llm_provider="offline",
        slack_bot_token="xoxb-test",
        slack_signing_secret=SECRET,
        slack_app_token="xapp-test" if mode == "socket" else None,
        slack_api_url=slack.api_url,
    )
    opened = nullcontext(bot) if bot else MemoryBot.open(settings, embeddings=embeddings)
    async with opened as bot:
        adapter = SlackAdapter(bot, settings)
        if mode == "http":
            runner = web.AppRunner(adapter.web_app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            yield kind(
                slack,
                bot,
                adapter,
                mode,
                lambda event, **kw: slack.post_event(url, event, **kw),
                lambda command, text="", **kw: slack.post_command(url, command, text, **kw),
                lambda payload: slack.post_interaction(url, payload),
            )
            await runner.cleanup()
            await adapter.aclose()
        else:
            handler = AsyncSocketModeHandler(adapter.app, "xapp-test")
            await handler.connect_async()
            await slack.connected()

            async def event(event, *, event_id=None, retry_num=None, team_id=None):
                payload = slack.event_payload(event, event_id=event_id, team_id=team_id)
                return await slack.push("events_api", payload, retry_attempt=retry_num or 0)

            async def command(command, text="", **kw):
                return await slack.push(
                    "slash_commands", slack.command_payload(command, text, **kw)
                )

            async def action(payload):
                return await slack.push("interactive", payload)

            yield kind(slack, bot, adapter, mode, event, command, action)
            await handler.close_async()
            await adapter.aclose()


@pytest.fixture(params=["http", "socket"])
async def harness(request, slack, tmp_path: Path, local_embeddings) -> AsyncIterator[Harness]:
    async with running_adapter(Harness, request.param, slack, tmp_path, local_embeddings) as run:
        yield run


async def test_seed_scenario(harness: Harness) -> None:
    slack = harness.slack
    mention = app_mention("U1", "<@UBOT> Hi! Remember: my name is Bob", channel="C1")
    await harness.deliver_event(mention)
    (placeholder,) = await slack.wait_for("chat.postMessage")
    assert placeholder.args["thread_ts"] == mention["ts"]  # answered in the message's thread
    assert placeholder.args["channel"] == "C1"
    await harness.answers(1)

    await harness.deliver_event(message("U1", "what is my name?", channel="D1"))
    assert "Bob" in (await harness.answers(2))[-1]
    await harness.deliver_event(message("U2", "what is my name?", channel="D2"))
    assert "Bob" not in (await harness.answers(3))[-1]
    await harness.deliver_event(message("U1", "what is my name?", channel="D9", team="T2"))
    assert "Bob" not in (await harness.answers(4))[-1]

    memories = await harness.bot.memories("slack:T1:U1")
    assert [m.value["text"] for m in memories] == ["My name is Bob."]
    assert await harness.bot.history(f"slack:T1:C1:{mention['ts']}")
    # The message is kept as an episode under Slack's own id for it, dated when sent.
    episodes = {e.value["message_id"]: e.value for e in await harness.bot.episodes("slack:T1:U1")}
    said = episodes[mention["ts"]]
    assert said["text"] == "Hi! Remember: my name is Bob"
    sent = datetime.fromtimestamp(float(mention["ts"]), UTC)
    assert datetime.fromisoformat(said["valid_from"]) == sent.replace(
        microsecond=sent.microsecond // 1000 * 1000
    )


async def test_thread_follow_ups_and_never_answering_bots(harness: Harness) -> None:
    mention = app_mention("U1", "<@UBOT> remember: I like tea", channel="C1")
    await harness.deliver_event(mention)
    await harness.answers(1)

    follow_up = message(
        "U2", "what do I like?", channel="C1", channel_type="channel", thread_ts=mention["ts"]
    )
    await harness.deliver_event(follow_up)
    await harness.answers(2)
    # Messages from bots, ourselves included, and edits: no answer.
    own = message(
        "UBOT",
        "I am the bot",
        channel="C1",
        channel_type="channel",
        thread_ts=mention["ts"],
        bot_id="BBOT",
    )
    other_bot = message("U3", "beep", channel="D1", bot_id="BOTHER")
    edited = message("U1", "edit", channel="D1", subtype="message_changed")
    unrelated = message(
        "U1", "not in a thread of ours", channel="C2", channel_type="channel", thread_ts="1.000001"
    )
    started = {  # as Slack sends it to assistant apps
        "type": "assistant_thread_started",
        "assistant_thread": {
            "user_id": "U1",
            "context": {"channel_id": "C1", "team_id": "T1", "enterprise_id": None},
            "channel_id": "D1",
            "thread_ts": "1729999327.187299",
        },
        "event_ts": "1729999327.187300",
    }
    for event in (own, other_bot, edited, unrelated, started):
        delivered = await harness.deliver_event(event)
        if harness.mode == "http":
            assert delivered.status == 200  # acked, or Slack would retry it
    await harness.sentinel()
    assert len(harness.calls("chat.postMessage")) == 2
    assert len(harness.calls("chat.update")) == 2


async def test_retried_event_is_answered_once(harness: Harness) -> None:
    event = message("U1", "hello there", channel="D1")
    deliveries = [
        harness.deliver_event(event, event_id="Ev0001", retry_num=n) for n in (None, 1, 2)
    ]
    await asyncio.gather(*deliveries)
    await harness.answers(1)
    await harness.sentinel()
    assert len(harness.calls("chat.postMessage")) == 1
    assert len(harness.calls("chat.update")) == 1


@pytest.mark.parametrize("harness", ["http"], indirect=True)  # Socket Mode is unsigned
async def test_bad_signature_is_refused_before_the_engine(harness: Harness) -> None:
    delivered = await harness.deliver_event(
        message("U1", "remember: my name is Eve", channel="D1"), bad_signature=True
    )
    assert delivered.status == 401
    stale = await harness.deliver_event(
        message("U1", "remember: my name is Eve", channel="D1"), timestamp=1_000_000
    )
    assert stale.status == 401
    await harness.sentinel()
    assert harness.calls("chat.postMessage") == []
    assert await harness.bot.memories("slack:T1:U1") == []
    assert await harness.bot.history("slack:T1:D1") == []


async def test_bad_input_gets_a_polite_answer(harness: Harness) -> None:
    slack = harness.slack
    await harness.deliver_event(app_mention("U1", "<@UBOT>", channel="C1"))
    assert "didn't get any text" in (await harness.answers(1))[-1]
    await harness.deliver_event(message("U1", "x" * 40_000, channel="D1"))
    assert "40,000 characters" in (await harness.answers(2))[-1]
    files = [{"id": "F1", "name": "report.pdf", "mimetype": "application/pdf"}]
    await harness.deliver_event(message("U1", "", channel="D1", files=files))
    posts = await slack.wait_for("chat.postMessage", count=3)
    assert posts[-1].args["text"] == FILES_ONLY


async def test_model_markdown_becomes_mrkdwn_and_cannot_mass_mention(
    harness: Harness,
) -> None:
    # The offline model repeats a matching memory: one with markup stands in for a model.
    await harness.bot.remember(
        "slack:T1:U1", "my favourite tool is **<!channel>** & [x](https://x.io)"
    )
    await harness.deliver_event(message("U1", "what is my favourite tool?", channel="D1"))
    (answer,) = await harness.answers(1)
    assert "<!channel>" not in answer and "&lt;!channel&gt;" in answer
    assert "&amp;" in answer


async def test_memories_command_lists_own_memories(harness: Harness) -> None:
    await harness.bot.remember("slack:T1:U1", "I like tea")
    await harness.bot.remember("slack:T1:U2", "I like coffee")
    await harness.deliver_command("/memories", user_id="U1")
    (response,) = await harness.slack.wait_for_responses(1)
    assert "1. I like tea." in response["text"] and "coffee" not in response["text"]


async def test_link_joins_a_slack_and_a_discord_account_and_unlink_parts_them(
    harness: Harness,
) -> None:
    bot = harness.bot
    await bot.chat(user_id="discord:42:7", thread_id="discord:42:900", text="I live in Lisbon")
    await bot.flush_memories()
    offered = await next_response(harness, harness.deliver_command("/link", user_id="U1"))
    found = re.search(r"\*([0-9A-Z]{5}-[0-9A-Z]{5})\*", offered["text"])
    assert found and "10 minutes" in offered["text"], offered["text"]
    assert offered.get("response_type", "ephemeral") == "ephemeral"
    # The code works on the other account, once.
    assert (await bot.link("discord:42:7", found[1])).ok
    listed = await next_response(harness, harness.deliver_command("/memories", user_id="U1"))
    assert "I live in Lisbon." in listed["text"]
    again = await next_response(harness, harness.deliver_command("/link", user_id="U1"))
    assert "linked to 1 other account" in again["text"]

    parted = await next_response(harness, harness.deliver_command("/unlink", user_id="U1"))
    assert "Unlinked" in parted["text"]
    assert await bot.memories("slack:T1:U1") == []  # Lisbon was said on Discord
    assert [m.value["text"] for m in await bot.memories("discord:42:7")] == ["I live in Lisbon."]
    alone = await next_response(harness, harness.deliver_command("/unlink", user_id="U1"))
    assert "isn't linked" in alone["text"]


async def test_link_with_a_code_from_discord_and_a_wrong_code(harness: Harness) -> None:
    bot = harness.bot
    wrong = await next_response(
        harness, harness.deliver_command("/link", "NOPE1-NOPE2", user_id="U1")
    )
    assert "isn't valid" in wrong["text"]
    code = await bot.link_code("discord:42:7")
    done = await next_response(harness, harness.deliver_command("/link", code.code, user_id="U1"))
    assert "Linked" in done["text"], done["text"]
    assert sorted(await bot.linked_accounts("slack:T1:U1")) == ["discord:42:7", "slack:T1:U1"]
    # The same Slack user id in another workspace is another person.
    assert await bot.linked_accounts("slack:T2:U1") == ["slack:T2:U1"]


def test_the_manifest_declares_exactly_the_slash_commands_the_adapter_answers() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text())
    declared = {c["command"] for c in manifest["features"]["slash_commands"]}
    source = (ROOT / "bots" / "slack.py").read_text()
    assert declared == set(re.findall(r'app\.command\("(/[a-z-]+)"\)', source))
    assert {"/memories", "/forget", "/link", "/unlink"} <= declared


async def next_response(harness: Harness, deliver: Awaitable[Any]) -> dict:
    """Deliver a command or click and return the response_url post it causes."""
    before = len(harness.slack.responses)
    await deliver
    return (await harness.slack.wait_for_responses(before + 1))[-1]


async def forget_flow(harness: Harness, actor: str, text: str) -> dict:
    return await next_response(harness, harness.deliver_command("/forget", text, user_id=actor))


def button(response: dict, action_id: str) -> str:
    (actions,) = [b for b in response["blocks"] if b["type"] == "actions"]
    return next(e["value"] for e in actions["elements"] if e["action_id"] == action_id)


async def test_forget_someone_else_needs_an_admin(harness: Harness) -> None:
    slack, bot = harness.slack, harness.bot
    await bot.remember("slack:T1:U1", "my name is Bob")
    await bot.remember("slack:T1:U2", "my name is Ann")

    refused = await forget_flow(harness, "U2", "<@U1|bob>")
    assert "Only workspace admins" in refused["text"] and "blocks" not in refused
    assert len(await bot.memories("slack:T1:U1")) == 1

    asked = await forget_flow(harness, "UADMIN", "<@U1|bob>")
    value = button(asked, "forget_confirm")
    # A non-admin pressing the admin's button changes nothing.
    denied = await next_response(
        harness, harness.deliver_action(slack.block_actions_payload("U2", "forget_confirm", value))
    )
    assert "can't erase" in denied["text"]
    assert len(await bot.memories("slack:T1:U1")) == 1

    done = await next_response(
        harness,
        harness.deliver_action(slack.block_actions_payload("UADMIN", "forget_confirm", value)),
    )
    assert done["replace_original"] is True and "erased 1" in done["text"]
    assert await bot.memories("slack:T1:U1") == []
    assert [m.value["text"] for m in await bot.memories("slack:T1:U2")] == ["My name is Ann."]
    (entry,) = harness.bot.audit.entries()
    assert entry["actor"] == "slack:T1:UADMIN" and entry["target"] == "slack:T1:U1"
    assert entry["count"] == 1 and entry["action"] == "forget_memories"


async def test_an_admin_erases_only_what_a_linked_member_said_in_this_workspace(
    harness: Harness,
) -> None:
    bot = harness.bot
    await bot.chat(user_id="slack:T1:U1", thread_id="slack:T1:D1", text="I live in Lisbon")
    await bot.chat(user_id="discord:42:7", thread_id="discord:42:9", text="my dog is called Rex")
    await bot.flush_memories()
    assert (await bot.link("discord:42:7", (await bot.link_code("slack:T1:U1")).code)).ok

    asked = await forget_flow(harness, "UADMIN", "<@U1|bob>")
    assert "Erase the 1 memory <@U1> gave in this workspace?" in asked["text"]
    assert "linked elsewhere" in asked["text"]
    value = button(asked, "forget_confirm")
    done = await next_response(
        harness,
        harness.deliver_action(
            harness.slack.block_actions_payload("UADMIN", "forget_confirm", value)
        ),
    )
    assert "erased 1" in done["text"]
    assert await bot.memories("slack:T1:U1") == []
    assert [m.value["text"] for m in await bot.memories("discord:42:7")] == ["My dog is Rex."]
    assert [e["action"] for e in bot.audit.entries()] == ["link", "unlink", "forget_memories"]


async def test_forget_own_memories_with_confirmation_or_cancel(harness: Harness) -> None:
    slack, bot = harness.slack, harness.bot
    await bot.remember("slack:T1:U1", "I like tea")
    asked = await forget_flow(harness, "U1", "")
    cancel = slack.block_actions_payload("U1", "forget_cancel", button(asked, "forget_cancel"))
    cancelled = await next_response(harness, harness.deliver_action(cancel))
    assert "Nothing was erased" in cancelled["text"]
    assert len(await bot.memories("slack:T1:U1")) == 1
    asked = await forget_flow(harness, "U1", "")
    confirm = slack.block_actions_payload("U1", "forget_confirm", button(asked, "forget_confirm"))
    await next_response(harness, harness.deliver_action(confirm))
    assert await bot.memories("slack:T1:U1") == []
    assert harness.bot.audit.entries() == []  # own erasure is not an admin action
    nonsense = await forget_flow(harness, "U1", "everyone please")
    assert "/forget @someone" in nonsense["text"]


async def test_llm_outage_apologises_in_the_thread(slack, tmp_path, local_embeddings) -> None:
    from tests.fakes.llm import FakeLLM

    async with FakeLLM() as llm:
        settings = Settings(
            data_dir=tmp_path,
            llm_provider="anthropic",
            anthropic_api_key="k",
            anthropic_base_url=llm.anthropic_url,
            slack_bot_token="xoxb-test",
            slack_signing_secret=SECRET,
            slack_api_url=slack.api_url,
        )
        llm.fail(529, times=3)
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            adapter = SlackAdapter(bot, settings)
            runner = web.AppRunner(adapter.web_app())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            await slack.post_event(url, message("U1", "are you there?", channel="D1"))
            (update,) = await slack.wait_for("chat.update")
            assert "Sorry" in update.args["text"]
            assert [m.content for m in await bot.history("slack:T1:D1")] == ["are you there?"]
            await runner.cleanup()
            await adapter.aclose()


async def test_a_burst_of_events_asks_slack_who_we_are_once(harness: Harness) -> None:
    """bolt's default authorization calls auth.test for every request that arrives before
    its first answer; the adapter asks once, so a burst is acked without 20 round trips."""
    burst = [message(f"U{i}", f"hello {i}", channel=f"D{i}") for i in range(20)]
    await asyncio.gather(*(harness.deliver_event(event) for event in burst))
    await harness.answers(20)
    assert len(harness.slack.calls_to("auth.test")) == 1


async def test_membot_run_serves_slack_when_configured(slack, tmp_path: Path) -> None:
    """The README's run command with Slack tokens set: Socket Mode, answering for real."""
    membot = str(Path(sys.executable).with_name("membot"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBOT_", "SLACK_"))}
    env |= {
        "MEMBOT_DATA_DIR": str(tmp_path),
        "MEMBOT_LLM_PROVIDER": "offline",
        "MEMBOT_SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": "xoxb-test",
        "SLACK_APP_TOKEN": "xapp-test",
    }
    process = await asyncio.create_subprocess_exec(
        membot, "run", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        await slack.connected(timeout=120)
        await slack.push("events_api", slack.event_payload(message("U1", "remember: I like tea")))
        (update,) = await slack.wait_for("chat.update", timeout=60)
        assert update.args["text"].startswith("[offline]")
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    assert process.returncode == 0  # SIGTERM is a clean shutdown
