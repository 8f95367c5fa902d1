"""The Discord adapter end to end: the real discord.py client (gateway + REST) against a
local fake Discord, with the real engine behind it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import discord
import pytest

from bots.chunking import split_message
from bots.discord import (
    FILES_ONLY,
    MESSAGE_LIMIT,
    DiscordAdapter,
    interaction_key,
    message_key,
    sharding,
)
from engine.bot import MemoryBot
from engine.inbox import Inbound
from engine.memory.manager import MEMORY_TOOL
from engine.settings import Settings
from tests.fakes.discord import (
    ADMIN_ID,
    APPLICATION_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    EPHEMERAL,
    GUILD_ID,
    MEMBER_ID,
    Call,
    Channel,
    FakeDiscord,
    Guild,
    Member,
    default_guilds,
)
from tests.fakes.llm import FakeLLM, Hold, ToolUse, echo_reply, last_user_text
from tests.fakes.waits import WAIT, eventually
from tests.llm_settings import fake_llm_options

OTHER_CHANNEL = 1_200_000_000_000_000_050
GUILD_2, GUILD_2_CHANNEL = 1_200_000_000_000_000_060, 1_200_000_000_000_000_061
BOTS_THREAD, MEMBERS_THREAD = 1_200_000_000_000_000_070, 1_200_000_000_000_000_071
OWNER_ID = 1_300_000_000_000_000_009  # a bot owner in the global-scope test
MESSAGES = "/channels/{channel_id}/messages"
CALLBACK = "/interactions/{id}/{token}/callback"
FOLLOWUP = "/webhooks/{app}/{token}"
SENTINEL = "are you there?"  # what `Running.sentinel` says


@dataclass
class Running:
    fake: FakeDiscord
    bot: MemoryBot
    adapter: DiscordAdapter
    sentinels: list[str] = field(default_factory=list)  # ids of `sentinel()`'s messages

    async def say(self, author: int, content: str, channel_id: int = CHANNEL_ID, **kw) -> dict:
        """Dispatch a message and return the bot's reply (the next POST to that channel) as
        it ended up: the post's body, with the text the message holds once every answer
        was delivered (an answer is posted with its first words, then edited)."""
        before = len(self.fake.calls_to("POST", MESSAGES))
        await self.fake.dispatch(
            "MESSAGE_CREATE", self.fake.message_create(author, content, channel_id=channel_id, **kw)
        )
        posts = await self.fake.wait_for("POST", MESSAGES, count=before + 1)
        assert posts[-1].path == f"/channels/{channel_id}/messages"
        await self.settled()
        return posts[-1].json | {"content": self.shown(posts[-1])}

    async def settled(self) -> None:
        """Until every answer was delivered in full: an inbox entry is closed only after
        its answer's last edit."""

        async def closed() -> bool:
            return await self.bot.inbox.open_count() == 0

        await eventually(closed, what="every answer delivered")

    def shown(self, call: Call) -> str:
        """The text the message that `call` created holds now, after its edits."""
        message_id = self.fake.made_by(call)
        assert message_id is not None, f"{call.method} {call.path} created no message"
        return self.fake.messages[message_id]["content"]

    async def sentinel(self) -> None:
        """A DM that must be answered, and its answer: whatever the events dispatched
        before it were going to post has been posted by then (no sleeping and hoping)."""
        event = self.fake.message_create(MEMBER_ID, SENTINEL, channel_id=DM_CHANNEL_ID)
        self.sentinels.append(event["id"])
        await self.fake.dispatch("MESSAGE_CREATE", event)
        await self.fake.wait_for_reply(event)

    def posts(self) -> list[Call]:
        """The bot's channel posts, the answers to sentinels left out."""
        return [
            c
            for c in self.fake.calls_to("POST", MESSAGES)
            if str(((c.json or {}).get("message_reference") or {}).get("message_id"))
            not in self.sentinels
        ]

    async def command(
        self,
        name: str,
        options: dict | None = None,
        *,
        user: int,
        member: int | None = None,
        channel_id: int = CHANNEL_ID,
    ) -> dict:
        """Dispatch a slash command; returns the event (its id and token name the answer)."""
        event = self.fake.interaction_create(name, options, user=user, channel_id=channel_id)
        if member is not None:  # a USER option, resolved the way Discord sends it
            guild = self.fake.guilds[0]
            target = next(m for m in guild.members if m.user_id == member)
            event["data"]["options"] = [{"name": "user", "type": 6, "value": str(member)}]
            event["data"]["resolved"] = {
                "users": {str(member): self.fake._user(member)},
                "members": {str(member): self.fake._member(guild, target, with_user=False)},
            }
        await self.fake.dispatch("INTERACTION_CREATE", event)
        return event

    async def click(self, custom_id: str, *, user: int, message: dict | None = None) -> dict:
        """Dispatch a button press (on `message`, else the bot's last message); the event."""
        event = self.fake.component_interaction(
            custom_id, user=user, channel_id=CHANNEL_ID, message=message
        )
        await self.fake.dispatch("INTERACTION_CREATE", event)
        return event

    def about(self, event: dict) -> list[Call]:
        """Every REST call answering one interaction, in order: the callback, follow-ups
        and edits (its token, random and unique, is in each of their paths)."""
        return [c for c in self.fake.calls if event["token"] in c.path]

    async def callback(self, event: dict) -> dict:
        """The interaction's acknowledgement (the body of its callback)."""
        (call,) = await self.fake.wait_for(
            "POST", CALLBACK, where=lambda c: c.path.startswith(f"/interactions/{event['id']}/")
        )
        return call.json

    async def response(self, event: dict) -> dict:
        """An `/ask`'s answer as it ended up: its response (the deferred "thinking…"
        message, which the answer is streamed into), once every answer was delivered."""

        def answering() -> bool:  # the answer started, so its inbox entry is open
            return any(not c.path.endswith("/callback") for c in self.about(event))

        await eventually(answering, what="an answer to the /ask")
        await self.settled()
        callbacks = self.fake.calls_to("POST", CALLBACK)
        made = [self.fake.made_by(c) for c in callbacks if event["token"] in c.path]
        (original,) = [m for m in made if m is not None]  # one acknowledgement accepted
        return self.fake.messages[original]

    async def answers(self, event: dict, count: int = 1) -> list[dict]:
        """The first `count` follow-ups or edits answering `event`, after checking the bot
        deferred it (type 5; 6 for a click) before anything else: Discord's 3-second
        deadline is met whatever the engine is waiting for."""

        def answered() -> list[Call] | None:
            found = self.about(event)
            return found if len(found) > count else None

        what = f"{count} answer(s) to {event['data'].get('name', 'a click')}"
        calls = await eventually(answered, what=what)
        deferral, *answers = calls
        assert deferral.path.endswith("/callback") and deferral.json["type"] in (5, 6), deferral
        assert not any(a.path.endswith("/callback") for a in answers)
        return [a.json for a in answers[:count]]

    async def answer(self, event: dict) -> dict:
        (answer,) = await self.answers(event)
        return answer


def assert_no_pings(body: dict) -> None:
    allowed = body["allowed_mentions"]
    assert allowed["parse"] == [] and not allowed.get("replied_user")
    assert not allowed.get("users") and not allowed.get("roles")


def guilds() -> list[Guild]:
    """The default server plus a second channel, and a second server that M1 is in too."""
    (guild,) = default_guilds()
    guild.channels.append(Channel(OTHER_CHANNEL, "random"))
    guild.channels.append(Channel(BOTS_THREAD, "bot's thread", 11, CHANNEL_ID, APPLICATION_ID))
    guild.channels.append(Channel(MEMBERS_THREAD, "a thread", 11, CHANNEL_ID, MEMBER_ID))
    other = Guild(
        GUILD_2,
        name="Other Server",
        channels=[Channel(GUILD_2_CHANNEL, "general")],
        members=[Member(MEMBER_ID, "bob")],
        roles=[],
    )
    return [guild, other]


def settings_for(fake: FakeDiscord, tmp_path: Path, **settings) -> Settings:
    options = {"llm_provider": "offline", "discord_token": fake.token} | settings
    return Settings(data_dir=tmp_path, **options)


@asynccontextmanager
async def running(
    tmp_path: Path, embeddings, *, fake_guilds: list[Guild] | None = None, **settings
) -> AsyncIterator[Running]:
    async with FakeDiscord(guilds=fake_guilds or guilds()) as fake:
        with fake.patch_client():
            async with serving(fake, tmp_path, embeddings, **settings) as run:
                yield run


@asynccontextmanager
async def serving(
    fake: FakeDiscord, tmp_path: Path, embeddings, bot: MemoryBot | None = None, **settings
) -> AsyncIterator[Running]:
    """The bot on `tmp_path` (or `bot`, shared with another platform's adapter, as
    `membot run` does), connected to `fake` (already patched in)."""
    config = settings_for(fake, tmp_path, **settings)
    opened = nullcontext(bot) if bot else MemoryBot.open(config, embeddings=embeddings)
    async with opened as bot:
        adapter = DiscordAdapter(bot, config, guild_ready_timeout=0.05)
        await adapter.client.login(fake.token)
        connection = asyncio.create_task(adapter.client.connect())
        await asyncio.wait_for(adapter.client.wait_until_ready(), WAIT)
        try:
            yield Running(fake, bot, adapter)
        finally:
            await adapter.client.close()
            await asyncio.wait_for(connection, WAIT)


@pytest.fixture
async def discord_bot(tmp_path, local_embeddings) -> AsyncIterator[Running]:
    async with running(tmp_path, local_embeddings) as run:
        yield run


async def test_commands_are_synced_at_login(discord_bot: Running) -> None:
    (sync,) = discord_bot.fake.calls_to("PUT", "/applications/{app}/commands")
    names = {c["name"] for c in sync.json}
    assert names == {
        "ask",
        "memories",
        "export",
        "remember",
        "forget",
        "forget-user",
        "link",
        "unlink",
    }
    (link,) = [c for c in sync.json if c["name"] == "link"]
    (code,) = link["options"]
    assert code["name"] == "code" and code["type"] == 3 and not code.get("required")
    assert code["description"] == "The code /link gave you on your other account"
    (admin_only,) = [c for c in sync.json if c["name"] == "forget-user"]
    assert int(admin_only["default_member_permissions"]) == 1 << 5  # MANAGE_GUILD
    assert not discord_bot.fake.identify["intents"] & (1 << 15)  # no privileged content intent


async def test_seed_scenario_scoped_per_server(discord_bot: Running) -> None:
    run = discord_bot
    me = f"<@{APPLICATION_ID}>"
    first = await run.say(MEMBER_ID, f"{me} Hi! Remember: my name is Bob", mentions_bot=True)
    assert first["message_reference"]["message_id"]  # a reply to that message
    assert_no_pings(first)
    assert run.fake.calls_to("POST", "/channels/{channel_id}/typing")

    answer = await run.say(MEMBER_ID, f"{me} what is my name?", OTHER_CHANNEL, mentions_bot=True)
    assert "Bob" in answer["content"]
    in_dm = await run.say(MEMBER_ID, "what is my name?", DM_CHANNEL_ID)  # DMs are their own scope
    assert "Bob" not in in_dm["content"]

    async def ask(user: int, channel_id: int) -> str:
        event = await run.command(
            "ask", {"question": "what is my name?"}, user=user, channel_id=channel_id
        )
        return (await run.response(event))["content"]

    assert "Bob" in await ask(MEMBER_ID, MEMBERS_THREAD)  # a thread: a new conversation
    assert "Bob" not in await ask(ADMIN_ID, MEMBERS_THREAD)
    assert "Bob" not in await ask(MEMBER_ID, GUILD_2_CHANNEL)  # another server, another scope

    memories = await run.bot.memories(f"discord:{GUILD_ID}:{MEMBER_ID}")
    assert [m.value["text"] for m in memories] == ["My name is Bob."]
    assert await run.bot.history(f"discord:{GUILD_ID}:{CHANNEL_ID}")
    # Each message is kept as an episode under Discord's id for it (the one replied to).
    episodes = await run.bot.episodes(f"discord:{GUILD_ID}:{MEMBER_ID}")
    by_id = {e.value["message_id"]: e.value["text"] for e in episodes}
    assert by_id[str(first["message_reference"]["message_id"])] == "Hi! Remember: my name is Bob"


async def test_unaddressed_bot_and_system_messages_get_no_answer(discord_bot: Running) -> None:
    run = discord_bot
    for event in (
        run.fake.message_create(MEMBER_ID, "just chatting", channel_id=CHANNEL_ID),
        run.fake.message_create(
            MEMBER_ID, f"<@{APPLICATION_ID}> hi", channel_id=CHANNEL_ID, author_bot=True
        ),
    ):
        await run.fake.dispatch("MESSAGE_CREATE", event)
    await run.sentinel()  # a DM always gets an answer
    assert run.posts() == []


async def test_empty_and_file_only_messages(discord_bot: Running) -> None:
    run = discord_bot
    empty = await run.say(MEMBER_ID, f"<@{APPLICATION_ID}>", mentions_bot=True)
    assert "didn't get any text" in empty["content"]
    event = run.fake.message_create(MEMBER_ID, "", channel_id=DM_CHANNEL_ID)
    event["attachments"] = [
        {
            "id": "1",
            "filename": "a.pdf",
            "size": 10,
            "url": "https://cdn/a.pdf",
            "proxy_url": "https://cdn/a.pdf",
        }
    ]
    await run.fake.dispatch("MESSAGE_CREATE", event)
    posts = await run.fake.wait_for("POST", MESSAGES, count=2)
    assert posts[-1].json["content"] == FILES_ONLY


async def test_long_model_answers_are_split_and_never_ping(tmp_path, local_embeddings) -> None:
    paragraph = ("@everyone <@&42> " + "word " * 195).strip()  # ~1,000 characters
    answer = "\n\n".join([paragraph] * 5)
    assert 4_900 < len(answer) < 5_000
    async with FakeLLM(
        reply=lambda body: "ok" if last_user_text(body) == SENTINEL else answer
    ) as llm:
        async with running(
            tmp_path,
            local_embeddings,
            llm_provider="anthropic",
            anthropic_api_key="k",
            anthropic_base_url=llm.anthropic_url,
        ) as run:
            await run.say(MEMBER_ID, "tell me a lot", DM_CHANNEL_ID)
            await run.sentinel()
            posts = run.posts()
            assert len(posts) == 3
            shown = [run.shown(p) for p in posts]
            # Every version of every part: the posts and their edits.
            versions = [v for p in posts for v in run.fake.versions(run.fake.made_by(p))]
    assert all(len(text) <= 2000 for text in shown)
    assert sum(text.count("word") for text in shown) == 5 * 195
    for version in versions:
        assert_no_pings(version.call.json)


async def test_ask_defers_then_answers(discord_bot: Running) -> None:
    run = discord_bot
    await run.bot.remember(f"discord:{GUILD_ID}:{MEMBER_ID}", "my name is Bob")
    event = await run.command("ask", {"question": "what is my name?"}, user=MEMBER_ID)
    assert (await run.callback(event))["type"] == 5  # deferred: "thinking…"
    answer = await run.response(event)  # streamed into that response
    assert "Bob" in answer["content"] and not answer.get("flags")  # for the channel to see
    edits = run.about(event)[1:]
    assert edits and all(c.method == "PATCH" and c.path.endswith("/@original") for c in edits)
    for edit in edits:
        assert_no_pings(edit.json)
    assert await run.bot.history(f"discord:{GUILD_ID}:{CHANNEL_ID}")


async def test_memories_and_remember_are_ephemeral(discord_bot: Running) -> None:
    run = discord_bot
    stored = await run.command("remember", {"fact": "I'm vegetarian"}, user=MEMBER_ID)
    assert await run.callback(stored) == {"type": 5, "data": {"flags": EPHEMERAL}}
    answer = await run.answer(stored)
    assert answer["flags"] == EPHEMERAL and answer["content"] == "Remembered: I'm vegetarian."
    listed = await run.answer(await run.command("memories", user=MEMBER_ID))
    assert listed["flags"] == EPHEMERAL and "1. I'm vegetarian." in listed["content"]
    for body in (answer, listed):  # remembered text quoted back never pings anyone
        assert_no_pings(body)
    theirs = await run.answer(await run.command("memories", user=ADMIN_ID))
    assert theirs["content"] == "I don't remember anything about you yet."


async def test_forget_own_memories_after_confirmation(discord_bot: Running) -> None:
    run = discord_bot
    me = f"discord:{GUILD_ID}:{MEMBER_ID}"
    await run.bot.remember(me, "I like tea")
    asked = await run.answer(await run.command("forget", user=MEMBER_ID))
    assert asked["flags"] == EPHEMERAL and asked["content"] == "Erase all 1 of your memories?"
    buttons = asked["components"][0]["components"]
    assert [b["custom_id"] for b in buttons] == ["forget:erase", "forget:cancel"]
    confirmation = run.fake.sent[-1]  # the follow-up carrying the buttons
    cancel = await run.click("forget:cancel", user=MEMBER_ID, message=confirmation)
    assert (await run.callback(cancel))["type"] == 6  # a deferred update of the confirmation
    cancelled = await run.answer(cancel)
    assert cancelled["content"] == "Cancelled. Nothing was erased." and not cancelled["components"]
    assert run.fake.messages[int(confirmation["id"])]["content"] == cancelled["content"]
    assert len(await run.bot.memories(me)) == 1

    await run.answer(await run.command("forget", user=MEMBER_ID))
    done = await run.answer(await run.click("forget:erase", user=MEMBER_ID))
    assert done["content"] == "Done: erased 1 of your memories." and not done["components"]
    assert await run.bot.memories(me) == []
    assert run.bot.audit.entries() == []
    nothing = await run.answer(await run.command("forget", user=MEMBER_ID))
    assert nothing["content"] == "There is nothing to forget: I hold none of your memories."


async def test_forget_user_needs_manage_server(discord_bot: Running) -> None:
    run = discord_bot
    member, admin = f"discord:{GUILD_ID}:{MEMBER_ID}", f"discord:{GUILD_ID}:{ADMIN_ID}"
    member_elsewhere = f"discord:{GUILD_2}:{MEMBER_ID}"
    await run.bot.remember(member, "my name is Bob")
    await run.bot.remember(admin, "my name is Alice")
    await run.bot.remember(member_elsewhere, "I like chess")

    refused = await run.answer(await run.command("forget-user", user=MEMBER_ID, member=ADMIN_ID))
    assert "Only members with Manage Server" in refused["content"]
    assert refused["flags"] == EPHEMERAL
    assert len(await run.bot.memories(admin)) == 1

    asked = await run.answer(await run.command("forget-user", user=ADMIN_ID, member=MEMBER_ID))
    assert asked["content"] == "Erase all 1 of bob's memories?"
    confirmation = run.fake.sent[-1]
    not_yours = await run.click("forget:erase", user=MEMBER_ID)  # only the asker may press
    assert "isn't your button" in (await run.callback(not_yours))["data"]["content"]
    assert len(await run.bot.memories(member)) == 1
    done = await run.answer(await run.click("forget:erase", user=ADMIN_ID, message=confirmation))
    assert done["content"] == "Done: erased 1 of bob's memories."
    assert await run.bot.memories(member) == []
    assert [m.value["text"] for m in await run.bot.memories(admin)] == ["My name is Alice."]
    assert [m.value["text"] for m in await run.bot.memories(member_elsewhere)] == ["I like chess."]
    (entry,) = run.bot.audit.entries()
    assert entry["actor"] == admin and entry["target"] == member and entry["count"] == 1


LINK_CODE = re.compile(r"[0-9A-Z]{5}-[0-9A-Z]{5}")
SLACK_ACCOUNT = "slack:T1:U1"


async def test_forget_user_of_a_linked_member_erases_only_what_was_said_in_this_server(
    discord_bot: Running,
) -> None:
    run = discord_bot
    member = f"discord:{GUILD_ID}:{MEMBER_ID}"
    thread = f"discord:{GUILD_ID}:{CHANNEL_ID}"
    await run.bot.chat(user_id=member, thread_id=thread, text="I live in Lisbon")
    await run.bot.chat(user_id=SLACK_ACCOUNT, thread_id="slack:T1:D1", text="I'm a nurse")
    await run.bot.flush_memories()
    assert (await run.bot.link(SLACK_ACCOUNT, (await run.bot.link_code(member)).code)).ok

    asked = await run.answer(await run.command("forget-user", user=ADMIN_ID, member=MEMBER_ID))
    assert asked["content"].startswith("Erase the 1 of bob's memories given in this server?")
    assert "linked elsewhere" in asked["content"]
    confirmation = run.fake.sent[-1]
    done = await run.answer(await run.click("forget:erase", user=ADMIN_ID, message=confirmation))
    assert done["content"] == "Done: erased 1 of bob's memories."
    assert await run.bot.memories(member) == []
    assert [m.value["text"] for m in await run.bot.memories(SLACK_ACCOUNT)] == ["I'm a nurse."]
    assert await run.bot.linked_accounts(SLACK_ACCOUNT) == [SLACK_ACCOUNT]


async def test_link_without_a_code_gives_one(discord_bot: Running) -> None:
    run = discord_bot
    for channel_id in (CHANNEL_ID, DM_CHANNEL_ID):  # in a server and in a DM
        event = await run.command("link", user=MEMBER_ID, channel_id=channel_id)
        assert await run.callback(event) == {"type": 5, "data": {"flags": EPHEMERAL}}
        answer = await run.answer(event)
        assert answer["flags"] == EPHEMERAL
        assert_no_pings(answer)
        shown = LINK_CODE.search(answer["content"])
        assert shown is not None, answer["content"]
        assert f"`/link {shown.group()}`" in answer["content"]
        assert "works once, for 10 minutes" in answer["content"]
        assert "/unlink" not in answer["content"]  # nothing linked yet
    # The last code was the DM account's own (a DM is a scope of its own).
    assert (await run.bot.link(SLACK_ACCOUNT, shown.group())).ok
    assert f"discord:dm:{MEMBER_ID}" in await run.bot.linked_accounts(SLACK_ACCOUNT)


async def test_link_with_a_slack_code_shares_memories(discord_bot: Running) -> None:
    run = discord_bot
    me = f"discord:{GUILD_ID}:{MEMBER_ID}"
    await run.bot.chat(user_id=SLACK_ACCOUNT, thread_id="slack:T1:C1:1.1", text="I live in Lisbon")
    await run.bot.flush_memories()
    before = await run.answer(await run.command("memories", user=MEMBER_ID))
    assert "Lisbon" not in before["content"]

    issued = await run.bot.link_code(SLACK_ACCOUNT)
    event = await run.command("link", {"code": issued.code}, user=MEMBER_ID)
    assert await run.callback(event) == {"type": 5, "data": {"flags": EPHEMERAL}}
    linked = await run.answer(event)
    assert linked["flags"] == EPHEMERAL and linked["content"].startswith("Linked"), linked
    assert_no_pings(linked)
    assert sorted(await run.bot.linked_accounts(me)) == sorted([me, SLACK_ACCOUNT])

    listed = await run.answer(await run.command("memories", user=MEMBER_ID))
    assert "I live in Lisbon." in listed["content"]
    # A new code from a linked account says who it is linked with, and how to undo it.
    again = await run.answer(await run.command("link", user=MEMBER_ID))
    assert LINK_CODE.search(again["content"])
    assert "linked with 1 other account;" in again["content"] and "/unlink" in again["content"]


async def test_link_with_a_wrong_code_is_refused(discord_bot: Running) -> None:
    run = discord_bot
    me = f"discord:{GUILD_ID}:{MEMBER_ID}"
    await run.bot.link_code(SLACK_ACCOUNT)
    wrong = await run.answer(await run.command("link", {"code": "AAAAA-AAAAA"}, user=MEMBER_ID))
    assert wrong["flags"] == EPHEMERAL and "isn't valid" in wrong["content"], wrong
    assert await run.bot.linked_accounts(me) == [me]


async def test_unlink(discord_bot: Running) -> None:
    run = discord_bot
    me = f"discord:{GUILD_ID}:{MEMBER_ID}"
    alone = await run.command("unlink", user=MEMBER_ID)
    assert await run.callback(alone) == {"type": 5, "data": {"flags": EPHEMERAL}}
    refused = await run.answer(alone)
    assert refused["flags"] == EPHEMERAL and "isn't linked" in refused["content"], refused

    issued = await run.bot.link_code(SLACK_ACCOUNT)
    linked = await run.answer(await run.command("link", {"code": issued.code}, user=MEMBER_ID))
    assert linked["content"].startswith("Linked"), linked
    unlinked = await run.answer(await run.command("unlink", user=MEMBER_ID))
    assert unlinked["flags"] == EPHEMERAL and unlinked["content"].startswith("Unlinked"), unlinked
    assert_no_pings(unlinked)
    assert await run.bot.linked_accounts(me) == [me]
    assert await run.bot.linked_accounts(SLACK_ACCOUNT) == [SLACK_ACCOUNT]


async def test_unknown_command_gets_an_ephemeral_answer(discord_bot: Running) -> None:
    reply = await discord_bot.callback(await discord_bot.command("dance", user=MEMBER_ID))
    assert reply["type"] == 4 and reply["data"]["flags"] == 64
    assert "don't know that command" in reply["data"]["content"]


async def test_threads_it_started_or_answered_in(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings, discord_message_content=True) as run:
        assert run.fake.identify["intents"] & (1 << 15)  # asked for message content
        await run.say(MEMBER_ID, "follow-up in its own thread", BOTS_THREAD)
        await run.say(MEMBER_ID, f"<@{APPLICATION_ID}> hello", MEMBERS_THREAD, mentions_bot=True)
        reply = await run.say(MEMBER_ID, "and a follow-up without a mention", MEMBERS_THREAD)
        assert reply["message_reference"]
        assert await run.bot.history(f"discord:{GUILD_ID}:{MEMBERS_THREAD}")
        await run.fake.dispatch(
            "MESSAGE_CREATE", run.fake.message_create(MEMBER_ID, "chat", channel_id=CHANNEL_ID)
        )
        await run.sentinel()
        assert len(run.posts()) == 3  # nothing for the plain channel


async def test_without_message_content_thread_chatter_is_left_alone(discord_bot: Running) -> None:
    run = discord_bot
    await run.say(MEMBER_ID, f"<@{APPLICATION_ID}> hello", MEMBERS_THREAD, mentions_bot=True)
    event = run.fake.message_create(
        MEMBER_ID, "unreadable without the intent", channel_id=MEMBERS_THREAD
    )
    await run.fake.dispatch("MESSAGE_CREATE", event)
    await run.sentinel()
    assert len(run.posts()) == 1  # no "I didn't get any text"


async def test_membot_run_serves_discord_when_configured(tmp_path: Path) -> None:
    """The README's run command with DISCORD_TOKEN set, as its own process."""
    async with FakeDiscord(guilds=guilds()) as fake:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBOT_", "SLACK_"))}
        env |= {
            "MEMBOT_DATA_DIR": str(tmp_path),
            "MEMBOT_LLM_PROVIDER": "offline",
            "DISCORD_TOKEN": fake.token,
            "MEMBOT_DISCORD_API_URL": fake.api_base,
            "MEMBOT_DISCORD_GATEWAY_URL": fake.gateway_url,
        }
        membot = str(Path(sys.executable).with_name("membot"))
        process = await asyncio.create_subprocess_exec(
            membot,
            "run",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await fake.ready(timeout=120)
            await fake.wait_for("PUT", "/applications/{app}/commands", timeout=WAIT)
            event = fake.message_create(MEMBER_ID, "remember: I like tea", channel_id=DM_CHANNEL_ID)
            await fake.dispatch("MESSAGE_CREATE", event)
            (reply,) = await fake.wait_for("POST", MESSAGES, timeout=60)
            assert reply.json["content"].startswith("[offline]")
        finally:
            process.terminate()
            _, stderr = await process.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    assert process.returncode == 0


@pytest.mark.parametrize(("shards", "identified"), [("auto", [0, 1]), ("2:1", [1, 2])])
async def test_sharded_client_answers(tmp_path, local_embeddings, shards, identified) -> None:
    """MEMBOT_DISCORD_SHARDS switches to discord.py's AutoShardedClient: "auto" asks
    Discord (GET /gateway/bot) for the count; "N:i" runs shard i of N in this replica."""
    async with running(tmp_path, local_embeddings, discord_shards=shards) as run:
        assert isinstance(run.adapter.client, discord.AutoShardedClient)
        assert run.fake.identify["shard"] == identified
        asked_gateway = bool(run.fake.calls_to("GET", "/gateway/bot"))
        assert asked_gateway == (shards == "auto")
        me = f"<@{APPLICATION_ID}>"
        reply = await run.say(MEMBER_ID, f"{me} Remember: my name is Bob", mentions_bot=True)
        assert reply["content"].startswith("[offline]")


def test_shard_settings_are_checked() -> None:
    assert sharding("off") == (False, None, None)
    assert sharding("4:0,2") == (True, 4, [0, 2])
    with pytest.raises(ValueError, match="below 2"):
        sharding("2:2")
    with pytest.raises(ValueError):
        Settings(discord_shards="many")


# -- acknowledged in time, answered once, answered after a crash -----------------------------


def is_extraction(body: dict) -> bool:
    return bool(body.get("tools"))


def learning_model(body: dict) -> str | ToolUse:
    """Chat: echo. Memory extraction: each thing the user said becomes a fact, as said."""
    if not is_extraction(body):
        return echo_reply(body)
    (asked,) = [m for m in body["messages"] if m["role"] == "user"]
    content = asked["content"]
    payload = json.loads(content if isinstance(content, str) else content[0]["text"])
    said = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
    return ToolUse(
        MEMORY_TOOL.name,
        {"operations": [{"action": "ADD", "text": text, "kind": "fact"} for text in said]},
    )


async def test_commands_are_deferred_while_learning_is_slow(tmp_path, local_embeddings) -> None:
    """Memory lookups and erasure wait for learning in progress, and an LLM extraction can
    take seconds; Discord forgets an interaction not acknowledged within 3 s (10062
    Unknown interaction). So each command and button is deferred before the engine is
    asked anything. The extraction here is held until the test lets it go (a 4 s
    extraction, or a 40 s one, without a clock): each acknowledgement arrives while it is
    held, and the answer only after."""
    async with FakeLLM(learning_model) as llm:
        options = fake_llm_options(llm) | {"memory_debounce_seconds": 0.0}
        async with running(tmp_path, local_embeddings, **options) as run:
            member = f"discord:{GUILD_ID}:{MEMBER_ID}"

            async def learning(text: str) -> Hold:
                """Bob says `text`; when this returns, its extraction is under way (held)."""
                held = llm.hold(is_extraction)
                await run.say(MEMBER_ID, text, mentions_bot=True)
                await held.arrived()
                return held

            async def deferred_while(held: Hold, event: dict, kind: int) -> None:
                """`event` was acknowledged while learning is held, and nothing else yet."""
                assert (await run.callback(event))["type"] == kind
                assert len(run.about(event)) == 1  # the answer waits for the learning
                held.release()

            held = await learning("I like tea")
            listing = await run.command("memories", user=MEMBER_ID)
            await deferred_while(held, listing, kind=5)
            listed = await run.answer(listing)
            assert listed["content"].startswith("What I remember about you:\n1. I like tea (")

            remembered = await run.answer(
                await run.command("remember", {"fact": "I'm vegetarian"}, user=MEMBER_ID)
            )
            assert remembered["content"] == "Remembered: I'm vegetarian."

            held = await learning("I like jazz")
            forget = await run.command("forget", user=MEMBER_ID)
            await deferred_while(held, forget, kind=5)
            asked = await run.answer(forget)
            assert asked["content"] == "Erase all 3 of your memories?"
            confirmation = run.fake.sent[-1]

            held = await learning("I like chess")
            erase = await run.click("forget:erase", user=MEMBER_ID, message=confirmation)
            await deferred_while(held, erase, kind=6)
            done = await run.answer(erase)  # learning that was under way is erased too
            assert done["content"] == "Done: erased 4 of your memories."
            assert await run.bot.memories(member) == []

            held = await learning("I like go")
            forget_bob = await run.command("forget-user", user=ADMIN_ID, member=MEMBER_ID)
            await deferred_while(held, forget_bob, kind=5)
            assert (await run.answer(forget_bob))["content"] == "Erase all 1 of bob's memories?"
            erase = await run.click("forget:erase", user=ADMIN_ID, message=run.fake.sent[-1])
            done = await run.answer(erase)
            assert done["content"] == "Done: erased 1 of bob's memories."
            assert await run.bot.memories(member) == []


async def test_a_message_delivered_twice_is_answered_once(discord_bot: Running) -> None:
    """The same MESSAGE_CREATE twice (a gateway replay; two replicas on one token each get
    it too): the inbox, keyed by Discord's message id, lets one delivery through."""
    run = discord_bot
    in_dm = run.fake.message_create(MEMBER_ID, "hello once", channel_id=DM_CHANNEL_ID)
    mention = run.fake.message_create(
        MEMBER_ID, "and once here", channel_id=CHANNEL_ID, mentions_bot=True
    )
    for event in (in_dm, mention, in_dm, mention):
        await run.fake.dispatch("MESSAGE_CREATE", event)
    await run.fake.wait_for_reply(in_dm)
    await run.fake.wait_for_reply(mention)
    await run.sentinel()
    answered = Counter(str(p.json["message_reference"]["message_id"]) for p in run.posts())
    assert answered == {in_dm["id"]: 1, mention["id"]: 1}


async def test_an_interaction_acknowledged_elsewhere_is_left_alone(discord_bot: Running) -> None:
    """/ask sent twice (as to two replicas): Discord accepts one acknowledgement (the
    other gets 40060), and only the one that acknowledged answers."""
    run = discord_bot
    ask = await run.command("ask", {"question": "how are you?"}, user=MEMBER_ID)
    await run.fake.dispatch("INTERACTION_CREATE", ask)
    answer = await run.response(ask)
    assert answer["content"].startswith("[offline]")
    await run.fake.wait_for(
        "POST", CALLBACK, count=2, where=lambda c: c.path.startswith(f"/interactions/{ask['id']}/")
    )
    await run.sentinel()
    answering = [c for c in run.about(ask) if not c.path.endswith("/callback")]
    assert answering and all(c.path.endswith("/@original") for c in answering)  # its response
    assert len(await run.bot.history(f"discord:{GUILD_ID}:{CHANNEL_ID}")) == 2  # one turn


def inbound_for(message: dict, *, guild_id: int | None, **fields) -> Inbound:
    """What the adapter accepts for `message` (a `message_create` payload)."""
    channel_id = int(message["channel_id"])
    where = guild_id if guild_id is not None else "dm"
    values = {
        "key": message_key(int(message["id"])),
        "platform": "discord",
        "user_id": f"discord:{where}:{message['author']['id']}",
        "thread_id": f"discord:{where}:{channel_id}",
        "text": message["content"].replace(f"<@{APPLICATION_ID}>", "").strip(),
        "message_id": message["id"],
        "at": datetime.now(UTC),
        "route": {"channel": channel_id, "message": int(message["id"])},
    }
    return Inbound(**(values | fields))


async def test_messages_a_dead_bot_accepted_are_answered_after_restart(
    tmp_path, local_embeddings
) -> None:
    """A process accepts messages and dies before answering them (the entries stay open in
    the data directory's inbox); the next process on that directory answers each once,
    where delivery had stopped: a plain reply; the rest of a long answer whose first
    part was posted; an /ask through its follow-up webhook, or in its channel once the
    webhook expired; the channel when the message was deleted; nothing where the
    channel is gone (its entry is closed)."""
    long_answer = "\n\n".join(f"part {n}: " + "word " * 390 for n in range(3))
    parts = split_message(long_answer, MESSAGE_LIMIT)
    assert len(parts) == 3
    async with FakeDiscord(guilds=guilds()) as fake:
        with fake.patch_client():
            asked = fake.message_create(MEMBER_ID, "a name for a cat?", channel_id=DM_CHANNEL_ID)
            long = fake.message_create(
                MEMBER_ID, "tell me a lot", channel_id=CHANNEL_ID, mentions_bot=True
            )
            deleted = fake.message_create(MEMBER_ID, "deleted since", channel_id=OTHER_CHANNEL)
            del fake.messages[int(deleted["id"])]
            lost = fake.message_create(MEMBER_ID, "in a channel gone", channel_id=CHANNEL_ID)
            ask = fake.interaction_create(
                "ask", {"question": "what now?"}, user=MEMBER_ID, channel_id=CHANNEL_ID
            )
            fake.know_interaction(ask, acknowledged=True)  # the dead process had deferred it
            old_ask = fake.interaction_create(
                "ask", {"question": "and long ago?"}, user=MEMBER_ID, channel_id=OTHER_CHANNEL
            )

            def interaction(event: dict, at: datetime) -> Inbound:
                question = event["data"]["options"][0]["value"]
                return Inbound(
                    key=interaction_key(int(event["id"])),
                    platform="discord",
                    user_id=f"discord:{GUILD_ID}:{MEMBER_ID}",
                    thread_id=f"discord:{GUILD_ID}:{event['channel_id']}",
                    text=question,
                    message_id=event["id"],
                    at=at,
                    route={
                        "channel": int(event["channel_id"]),
                        "interaction": {"application": APPLICATION_ID, "token": event["token"]},
                    },
                )

            config = settings_for(fake, tmp_path)
            async with MemoryBot.open(config, embeddings=local_embeddings) as dead:
                await dead.accept(inbound_for(asked, guild_id=None))
                ticket = await dead.accept(inbound_for(long, guild_id=GUILD_ID))
                assert ticket is not None
                await ticket.note(reply=long_answer, posted=1)  # part 1 was posted
                await dead.accept(inbound_for(deleted, guild_id=GUILD_ID))
                gone = {"channel": 1_200_000_000_000_000_099, "message": int(lost["id"])}
                await dead.accept(inbound_for(lost, guild_id=GUILD_ID, route=gone))
                await dead.accept(interaction(ask, datetime.now(UTC)))
                await dead.accept(interaction(old_ask, datetime.now(UTC) - timedelta(minutes=20)))
                assert await dead.inbox.open_count() == 6
                # ... and the process dies: nothing answered, nothing released.

            async with serving(fake, tmp_path, local_embeddings) as run:
                reply = await fake.wait_for_reply(asked)
                assert reply.json["content"].startswith("[offline]")
                assert str(reply.json["message_reference"]["message_id"]) == asked["id"]

                async def all_closed() -> bool:
                    return await run.bot.inbox.open_count() == 0

                await eventually(all_closed, what="every taken-over message closed")
                await run.sentinel()

                def posted_in(channel_id: int) -> list[dict]:
                    path = f"/channels/{channel_id}/messages"
                    return [p.json for p in run.posts() if p.path == path]

                assert posted_in(DM_CHANNEL_ID) == [reply.json]  # answered once
                # The rest of the long answer, as channel messages; nothing posted twice.
                assert [p["content"] for p in posted_in(CHANNEL_ID)] == parts[1:]
                (late, to_deleted) = sorted(
                    posted_in(OTHER_CHANNEL), key=lambda p: "message_reference" in p
                )
                # A reply to a message deleted since is posted all the same; the /ask whose
                # follow-up webhook had expired is answered in its channel.
                assert to_deleted["message_reference"]["fail_if_not_exists"] is False
                assert to_deleted["content"].startswith("[offline]")
                assert "message_reference" not in late and late["content"].startswith("[offline]")
                (followup,) = [c for c in run.about(ask) if c.method == "POST"]
                assert followup.json["content"].startswith("[offline]")
                assert len(run.posts()) == 5  # and nothing for the channel that is gone


async def test_global_scope_forget_user_is_for_bot_owners(tmp_path, local_embeddings) -> None:
    """With one memory per person across every server, no one server's admins may erase
    it: /forget-user is for the configured bot owners (MEMBOT_DISCORD_OWNERS) only."""
    (guild, *others) = guilds()
    guild.members.append(Member(OWNER_ID, "olive"))  # an owner need not be a server admin
    async with running(
        tmp_path,
        local_embeddings,
        fake_guilds=[guild, *others],
        discord_memory_scope="global",
        discord_owners=f"{OWNER_ID}, 42",
    ) as run:
        bob = f"discord:{MEMBER_ID}"
        await run.bot.remember(bob, "my name is Bob")

        by_admin = await run.command("forget-user", user=ADMIN_ID, member=MEMBER_ID)
        refused = await run.answer(by_admin)
        assert "only the bot's owners" in refused["content"] and refused["flags"] == EPHEMERAL
        assert len(await run.bot.memories(bob)) == 1

        asked = await run.answer(await run.command("forget-user", user=OWNER_ID, member=MEMBER_ID))
        assert asked["content"] == "Erase all 1 of bob's memories?"
        done = await run.answer(await run.click("forget:erase", user=OWNER_ID))
        assert done["content"] == "Done: erased 1 of bob's memories."
        assert await run.bot.memories(bob) == []
        (entry,) = run.bot.audit.entries()
        assert entry["actor"] == f"discord:{OWNER_ID}" and entry["target"] == bob
