"""The Discord adapter end to end: the real discord.py client (gateway + REST) against a
local fake Discord, with the real engine behind it."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest

from bots.discord import FILES_ONLY, DiscordAdapter, sharding
from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.discord import (
    ADMIN_ID,
    APPLICATION_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    MEMBER_ID,
    Channel,
    FakeDiscord,
    Guild,
    Member,
    default_guilds,
)
from tests.fakes.llm import FakeLLM

OTHER_CHANNEL = 1_200_000_000_000_000_050
GUILD_2, GUILD_2_CHANNEL = 1_200_000_000_000_000_060, 1_200_000_000_000_000_061
BOTS_THREAD, MEMBERS_THREAD = 1_200_000_000_000_000_070, 1_200_000_000_000_000_071
MESSAGES = "/channels/{channel_id}/messages"
CALLBACK = "/interactions/{id}/{token}/callback"
FOLLOWUP = "/webhooks/{app}/{token}"


@dataclass
class Running:
    fake: FakeDiscord
    bot: MemoryBot
    adapter: DiscordAdapter

    async def say(self, author: int, content: str, channel_id: int = CHANNEL_ID, **kw) -> dict:
        """Dispatch a message and return the bot's reply (the next POST to that channel)."""
        before = len(self.fake.calls_to("POST", MESSAGES))
        await self.fake.dispatch(
            "MESSAGE_CREATE", self.fake.message_create(author, content, channel_id=channel_id, **kw)
        )
        posts = await self.fake.wait_for("POST", MESSAGES, count=before + 1)
        assert posts[-1].path == f"/channels/{channel_id}/messages"
        return posts[-1].json

    async def command(
        self,
        name: str,
        options: dict | None = None,
        *,
        user: int,
        member: int | None = None,
        channel_id: int = CHANNEL_ID,
    ) -> dict:
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
        calls = await self.fake.wait_for("POST", CALLBACK, count=len(self._callbacks()) + 1)
        return calls[-1].json

    async def click(self, custom_id: str, *, user: int, message: dict | None = None) -> dict:
        event = self.fake.component_interaction(
            custom_id, user=user, channel_id=CHANNEL_ID, message=message
        )
        await self.fake.dispatch("INTERACTION_CREATE", event)
        calls = await self.fake.wait_for("POST", CALLBACK, count=len(self._callbacks()) + 1)
        return calls[-1].json

    def _callbacks(self) -> list:
        return self.fake.calls_to("POST", CALLBACK)


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


@asynccontextmanager
async def running(tmp_path: Path, embeddings, **settings) -> AsyncIterator[Running]:
    async with FakeDiscord(guilds=guilds()) as fake:
        with fake.patch_client():
            options = {"llm_provider": "offline", "discord_token": fake.token} | settings
            config = Settings(data_dir=tmp_path, **options)
            async with MemoryBot.open(config, embeddings=embeddings) as bot:
                adapter = DiscordAdapter(bot, config, guild_ready_timeout=0.05)
                await adapter.client.login(fake.token)
                connection = asyncio.create_task(adapter.client.connect())
                await asyncio.wait_for(adapter.client.wait_until_ready(), 10)
                try:
                    yield Running(fake, bot, adapter)
                finally:
                    await adapter.client.close()
                    await asyncio.wait_for(connection, 5)


@pytest.fixture
async def discord_bot(tmp_path, local_embeddings) -> AsyncIterator[Running]:
    async with running(tmp_path, local_embeddings) as run:
        yield run


async def test_commands_are_synced_at_login(discord_bot: Running) -> None:
    (sync,) = discord_bot.fake.calls_to("PUT", "/applications/{app}/commands")
    names = {c["name"] for c in sync.json}
    assert names == {"ask", "memories", "remember", "forget", "forget-user"}
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
        before = len(run.fake.calls_to("POST", FOLLOWUP))
        await run.command("ask", {"question": "what is my name?"}, user=user, channel_id=channel_id)
        return (await run.fake.wait_for("POST", FOLLOWUP, count=before + 1))[-1].json["content"]

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
    await run.say(MEMBER_ID, "hello", DM_CHANNEL_ID)  # a DM always gets an answer
    assert len(run.fake.calls_to("POST", MESSAGES)) == 1


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
    async with FakeLLM(reply=lambda body: answer) as llm:
        async with running(
            tmp_path,
            local_embeddings,
            llm_provider="anthropic",
            anthropic_api_key="k",
            anthropic_base_url=llm.anthropic_url,
        ) as run:
            await run.say(MEMBER_ID, "tell me a lot", DM_CHANNEL_ID)
            posts = await run.fake.wait_for("POST", MESSAGES, count=3)
            await asyncio.sleep(0.3)
            assert len(run.fake.calls_to("POST", MESSAGES)) == 3
    assert all(len(p.json["content"]) <= 2000 for p in posts)
    assert sum(p.json["content"].count("word") for p in posts) == 5 * 195
    for post in posts:
        assert_no_pings(post.json)


async def test_ask_defers_then_answers(discord_bot: Running) -> None:
    run = discord_bot
    await run.bot.remember(f"discord:{GUILD_ID}:{MEMBER_ID}", "my name is Bob")
    callback = await run.command("ask", {"question": "what is my name?"}, user=MEMBER_ID)
    assert callback["type"] == 5  # deferred: the answer comes as a follow-up
    (followup,) = await run.fake.wait_for("POST", FOLLOWUP)
    assert "Bob" in followup.json["content"]
    assert await run.bot.history(f"discord:{GUILD_ID}:{CHANNEL_ID}")


async def test_memories_and_remember_are_ephemeral(discord_bot: Running) -> None:
    run = discord_bot
    stored = await run.command("remember", {"fact": "I'm vegetarian"}, user=MEMBER_ID)
    assert stored["type"] == 4 and stored["data"]["flags"] == 64
    assert "I'm vegetarian." in stored["data"]["content"]
    listed = await run.command("memories", user=MEMBER_ID)
    assert listed["data"]["flags"] == 64 and "1. I'm vegetarian." in listed["data"]["content"]
    assert "vegetarian" not in (await run.command("memories", user=ADMIN_ID))["data"]["content"]


async def test_forget_own_memories_after_confirmation(discord_bot: Running) -> None:
    run = discord_bot
    me = f"discord:{GUILD_ID}:{MEMBER_ID}"
    await run.bot.remember(me, "I like tea")
    asked = await run.command("forget", user=MEMBER_ID)
    assert asked["data"]["flags"] == 64 and "Erase all 1" in asked["data"]["content"]
    cancelled = await run.click("forget:cancel", user=MEMBER_ID)
    assert "Nothing was erased" in cancelled["data"]["content"]
    assert len(await run.bot.memories(me)) == 1
    await run.command("forget", user=MEMBER_ID)
    done = await run.click("forget:erase", user=MEMBER_ID)
    assert "erased 1" in done["data"]["content"]
    assert await run.bot.memories(me) == []
    assert run.adapter.audit.entries() == []


async def test_forget_user_needs_manage_server(discord_bot: Running) -> None:
    run = discord_bot
    member, admin = f"discord:{GUILD_ID}:{MEMBER_ID}", f"discord:{GUILD_ID}:{ADMIN_ID}"
    member_elsewhere = f"discord:{GUILD_2}:{MEMBER_ID}"
    await run.bot.remember(member, "my name is Bob")
    await run.bot.remember(admin, "my name is Alice")
    await run.bot.remember(member_elsewhere, "I like chess")

    refused = await run.command("forget-user", user=MEMBER_ID, member=ADMIN_ID)
    assert "Only members with Manage Server" in refused["data"]["content"]
    assert len(await run.bot.memories(admin)) == 1

    asked = await run.command("forget-user", user=ADMIN_ID, member=MEMBER_ID)
    assert "Erase all 1" in asked["data"]["content"]
    confirmation = run.fake.sent[-1]
    not_yours = await run.click("forget:erase", user=MEMBER_ID)  # only the asker may press
    assert "isn't your button" in not_yours["data"]["content"]
    assert len(await run.bot.memories(member)) == 1
    done = await run.click("forget:erase", user=ADMIN_ID, message=confirmation)
    assert "erased 1" in done["data"]["content"]
    assert await run.bot.memories(member) == []
    assert [m.value["text"] for m in await run.bot.memories(admin)] == ["My name is Alice."]
    assert [m.value["text"] for m in await run.bot.memories(member_elsewhere)] == ["I like chess."]
    (entry,) = run.adapter.audit.entries()
    assert entry["actor"] == admin and entry["target"] == member and entry["count"] == 1


async def test_unknown_command_gets_an_ephemeral_answer(discord_bot: Running) -> None:
    reply = await discord_bot.command("dance", user=MEMBER_ID)
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
        await asyncio.sleep(0.3)
        assert len(run.fake.calls_to("POST", MESSAGES)) == 3  # nothing for the plain channel


async def test_without_message_content_thread_chatter_is_left_alone(discord_bot: Running) -> None:
    run = discord_bot
    await run.say(MEMBER_ID, f"<@{APPLICATION_ID}> hello", MEMBERS_THREAD, mentions_bot=True)
    event = run.fake.message_create(
        MEMBER_ID, "unreadable without the intent", channel_id=MEMBERS_THREAD
    )
    await run.fake.dispatch("MESSAGE_CREATE", event)
    await asyncio.sleep(0.3)
    assert len(run.fake.calls_to("POST", MESSAGES)) == 1  # no "I didn't get any text"


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
            await fake.wait_for("PUT", "/applications/{app}/commands", timeout=30)
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
