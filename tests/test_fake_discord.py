"""The fake Discord speaks what the real discord.py expects.

Each test runs an unmodified `discord.Client` with an `app_commands.CommandTree` against
`tests/fakes/discord.py`: login, the gateway handshake, member chunking, command sync, messages,
replies, typing, slash commands, buttons, resume and shutdown. If the fake drifted from what
discord.py sends or accepts, these are the tests that break, rather than the bot's adapter tests
failing for reasons that have nothing to do with the bot.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import threading
import warnings
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.gateway import KeepAliveHandler
from discord.http import Route
from discord.utils import _ActiveDecompressionContext

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
    Role,
)
from tests.fakes.waits import WAIT, eventually

Bot = tuple[discord.Client, app_commands.CommandTree]
Setup = Callable[[discord.Client, app_commands.CommandTree], None]
GUILD = discord.Object(GUILD_ID)
CALLBACK = "/interactions/{id}/{token}/callback"


def bot_intents() -> discord.Intents:
    """What a memory bot needs: members (chunked at startup) and message content."""
    intents = discord.Intents.default()
    intents.members = intents.message_content = True
    return intents


def collect(into: list[discord.Message]) -> Callable[[discord.Message], Awaitable[None]]:
    """An on_message handler that keeps what arrives."""

    async def on_message(message: discord.Message) -> None:
        into.append(message)

    return on_message


@pytest.fixture
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeDiscord]:
    """The default fake, or FakeDiscord(**param) via indirect parametrisation."""
    async with FakeDiscord(**getattr(request, "param", {})) as server:
        with server.patch_client():
            yield server


@pytest.fixture
async def connect(fake: FakeDiscord) -> AsyncIterator[Callable[..., Awaitable[Bot]]]:
    """Start real clients against the fake; at teardown close them and fail on any error
    discord.py swallowed (it only logs exceptions raised in event handlers and commands)."""
    clients: list[discord.Client] = []
    tasks: list[asyncio.Task[None]] = []
    errors: list[BaseException] = []

    async def start(intents: discord.Intents | None = None, setup: Setup | None = None) -> Bot:
        # guild_ready_timeout: discord.py waits this long (2 s by default) after the last
        # GUILD_CREATE before on_ready.
        client = discord.Client(intents=intents or bot_intents(), guild_ready_timeout=0.05)
        clients.append(client)
        tree = app_commands.CommandTree(client)

        async def on_error(event: str, *args: object, **kwargs: object) -> None:
            errors.append(sys.exc_info()[1] or RuntimeError(event))

        @tree.error
        async def on_command_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            errors.append(error)

        client.on_error = on_error  # type: ignore[method-assign]
        if setup:
            setup(client, tree)
        await client.login(fake.token)
        task = asyncio.create_task(client.connect())
        tasks.append(task)
        ready = asyncio.create_task(client.wait_until_ready())
        await asyncio.wait({task, ready}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            ready.cancel()
            task.result() if task.done() else pytest.fail(f"on_ready did not fire in {WAIT}s")
        return client, tree

    yield start
    for client in clients:
        await client.close()
    ended = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), WAIT)
    assert not errors + [e for e in ended if e is not None]


async def test_login_connect_ready_and_guild_cache(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    fired: list[str] = []

    def setup(client: discord.Client, tree: app_commands.CommandTree) -> None:
        @client.event
        async def on_ready() -> None:
            fired.append("ready")

    client, _ = await connect(setup=setup)
    assert await eventually(lambda: fired) == ["ready"]
    assert client.user is not None and client.user.id == fake.bot_user_id and client.user.bot
    assert client.application_id == APPLICATION_ID
    login = fake.calls_to("GET", "/users/@me") + fake.calls_to("GET", "/oauth2/applications/@me")
    assert [c.headers["Authorization"] for c in login] == ["Bot fake-token"] * 2

    # The gateway: discord.py asks for transport compression and gets it; IDENTIFY carries intents.
    compression = _ActiveDecompressionContext.COMPRESSION_TYPE
    assert fake.gateway_params == {"v": "10", "encoding": "json", "compress": compression}
    assert fake.identify is not None and fake.identify["token"] == "fake-token"
    assert fake.identify["intents"] == bot_intents().value
    await fake.ready()
    await eventually(lambda: math.isfinite(client.latency))  # a heartbeat was ACKed
    assert fake.heartbeats >= 1

    guild = client.get_guild(GUILD_ID)
    assert guild is not None and guild.name == "Test Guild" and guild.chunked
    channel = guild.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel) and channel.name == "general"
    assert [r["guild_id"] for r in fake.member_requests] == [GUILD_ID]  # chunked via op 8
    admin, member = guild.get_member(ADMIN_ID), guild.get_member(MEMBER_ID)
    assert admin is not None and admin.name == "alice" and admin.guild_permissions.manage_guild
    assert member is not None and not member.guild_permissions.manage_guild
    assert guild.me.id == fake.bot_user_id and guild.member_count == 3
    assert channel.permissions_for(guild.me).send_messages


async def test_default_intents_cache_only_the_bot_and_blank_content(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """Without the privileged intents: no chunking, and guild messages arrive without content
    unless they mention the bot; DMs keep theirs."""
    client, _ = await connect(intents=discord.Intents.default())
    seen: list[discord.Message] = []
    client.event(collect(seen))
    guild = client.get_guild(GUILD_ID)
    assert guild is not None and guild.get_member(ADMIN_ID) is None and guild.me is not None
    assert fake.member_requests == []

    for content, channel, mention in [
        ("plain", CHANNEL_ID, False),
        ("hey", CHANNEL_ID, True),
        ("dm", DM_CHANNEL_ID, False),
    ]:
        msg = fake.message_create(MEMBER_ID, content, channel_id=channel, mentions_bot=mention)
        assert await fake.dispatch("MESSAGE_CREATE", msg)
    await eventually(lambda: len(seen) == 3)
    assert [m.content for m in seen] == ["", f"<@{fake.bot_user_id}> hey", "dm"]
    assert isinstance(seen[0].author, discord.Member)  # built from the message's member payload


OTHER_GUILD = Guild(
    7,
    name="Other",
    channels=[Channel(71, "memories"), *(Channel(70 + t, str(t), type=t) for t in (2, 4, 5, 13))],
    members=[Member(5, "carol", roles=[8])],
    roles=[Role(8, "mods", permissions=1 << 3)],  # ADMINISTRATOR implies every permission
)


@pytest.mark.parametrize("fake", [{"guilds": [OTHER_GUILD, Guild(9)]}], indirect=True)
async def test_configured_guilds_with_the_presences_intent(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """With presences, Discord puts the members in GUILD_CREATE and discord.py skips chunking."""
    intents = bot_intents()
    intents.presences = True
    client, tree = await connect(intents=intents)
    assert fake.member_requests == []
    assert sorted(g.id for g in client.guilds) == [7, 9]
    other = client.get_guild(7)
    assert other is not None and other.name == "Other" and other.chunked
    kinds = [type(other.get_channel(70 + t)) for t in (2, 4, 5, 13)]
    assert kinds == [
        discord.VoiceChannel,
        discord.CategoryChannel,
        discord.TextChannel,
        discord.StageChannel,
    ]
    carol = other.get_member(5)
    assert carol is not None and [r.name for r in carol.roles] == ["@everyone", "mods"]
    assert carol.guild_permissions.manage_guild and carol.guild_permissions.administrator
    assert (empty := client.get_guild(9)) is not None and empty.me is not None

    # Interactions carry the member's permissions as Discord computes them.
    seen: list[discord.Permissions] = []
    answered: list[bool] = []

    @tree.command(description="Who am I")
    async def whoami(interaction: discord.Interaction) -> None:
        seen.append(interaction.permissions)
        await interaction.response.send_message("a mod")
        answered.append(True)  # the sentinel: the fake has the answer before teardown

    await fake.dispatch(
        "INTERACTION_CREATE", fake.interaction_create("whoami", user=5, channel_id=71)
    )
    await eventually(lambda: answered)
    (permissions,) = seen
    assert permissions.administrator and permissions.manage_messages


async def test_zlib_stream_transport(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]], monkeypatch: pytest.MonkeyPatch
):
    """discord.py asks for zlib-stream where zstandard is not installed; the fake serves both."""

    class ZlibContext:  # discord.utils._ZlibDecompressionContext, defined only without zstd
        COMPRESSION_TYPE = "zlib-stream"

        def __init__(self) -> None:
            self.buffer, self.context = bytearray(), zlib.decompressobj()

        def decompress(self, data: bytes, /) -> str | None:
            self.buffer.extend(data)
            if len(data) < 4 or data[-4:] != b"\x00\x00\xff\xff":
                return None
            msg, self.buffer = self.context.decompress(self.buffer), bytearray()
            return msg.decode()

    monkeypatch.setattr(discord.utils, "_ActiveDecompressionContext", ZlibContext)
    client, _ = await connect()
    assert fake.gateway_params["compress"] == "zlib-stream"
    assert client.get_guild(GUILD_ID) is not None


async def test_tree_sync_puts_global_and_guild_commands(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    _, tree = await connect()

    @tree.command(description="Remember something")
    async def remember(interaction: discord.Interaction, fact: str) -> None:
        await interaction.response.send_message("ok")

    @tree.command(description="Forget everything", guild=GUILD)
    async def forget(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("forgotten", ephemeral=True)

    synced = await tree.sync()
    (put,) = await fake.wait_for("PUT", "/applications/{app}/commands")
    assert put.path == f"/applications/{APPLICATION_ID}/commands"
    assert [c["name"] for c in put.json] == ["remember"]
    assert put.json[0]["description"] == "Remember something"
    option = put.json[0]["options"][0]
    assert (option["type"], option["name"], option["required"]) == (3, "fact", True)
    assert [c.id for c in synced] == [int(c["id"]) for c in fake.commands[None]]

    guild_synced = await tree.sync(guild=GUILD)
    (put,) = await fake.wait_for("PUT", "/applications/{app}/guilds/{guild_id}/commands")
    assert put.path == f"/applications/{APPLICATION_ID}/guilds/{GUILD_ID}/commands"
    assert [c["name"] for c in put.json] == ["forget"]
    assert guild_synced[0].guild_id == GUILD_ID

    # A synced guild command's interaction carries its guild_id, so the tree finds it.
    event = fake.interaction_create("forget", user=MEMBER_ID, channel_id=CHANNEL_ID)
    assert event["data"]["guild_id"] == str(GUILD_ID)
    await fake.dispatch("INTERACTION_CREATE", event)
    (callback,) = await fake.wait_for("POST", "/interactions/{id}/{token}/callback")
    assert callback.json == {"type": 4, "data": {"content": "forgotten", "tts": False, "flags": 64}}


async def test_message_reply_and_typing(fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]):
    client, _ = await connect()
    received: list[discord.Message] = []
    own: list[discord.Message] = []

    @client.event
    async def on_message(message: discord.Message) -> None:
        if message.author == client.user:  # Discord echoes the bot's own messages back
            own.append(message)
            return
        received.append(message)
        async with message.channel.typing():
            await message.reply("hi", allowed_mentions=discord.AllowedMentions.none())

    incoming = fake.message_create(MEMBER_ID, "hello", channel_id=CHANNEL_ID, mentions_bot=True)
    assert await fake.dispatch("MESSAGE_CREATE", incoming)
    (post,) = await fake.wait_for("POST", "/channels/{channel_id}/messages")
    assert post.path == f"/channels/{CHANNEL_ID}/messages"
    assert post.json["content"] == "hi"
    ref = {"message_id": int(incoming["id"]), "channel_id": CHANNEL_ID, "guild_id": GUILD_ID}
    assert post.json["message_reference"] == ref  # ints: discord.py sends snowflakes unquoted
    assert post.json["allowed_mentions"] == {"parse": []}
    typing = fake.calls_to("POST", "/channels/{channel_id}/typing")
    assert [c.path for c in typing] == [f"/channels/{CHANNEL_ID}/typing"]
    assert fake.calls.index(typing[0]) < fake.calls.index(post)

    (message,) = received
    assert isinstance(message.author, discord.Member) and message.author.id == MEMBER_ID
    assert message.content == f"<@{fake.bot_user_id}> hello"
    assert message.channel.id == CHANNEL_ID and message.guild is not None
    assert message.guild.id == GUILD_ID
    assert client.user is not None and client.user.mentioned_in(message)

    (echo,) = await eventually(lambda: own)
    assert echo.content == "hi" and echo.reference is not None
    assert echo.reference.message_id == message.id
    assert echo.type is discord.MessageType.reply


async def test_direct_message(fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]):
    client, _ = await connect()
    received: list[discord.Message] = []
    client.event(collect(received))

    dm = fake.message_create(MEMBER_ID, "remember I like tea", channel_id=DM_CHANNEL_ID)
    assert "guild_id" not in dm and "member" not in dm
    assert await fake.dispatch("MESSAGE_CREATE", dm)
    (message,) = await eventually(lambda: received)
    assert message.guild is None and isinstance(message.channel, discord.DMChannel)
    assert isinstance(message.author, discord.User) and message.author.id == MEMBER_ID
    assert client.user is not None and not client.user.mentioned_in(message)

    await message.reply("noted")
    (post,) = await fake.wait_for("POST", "/channels/{channel_id}/messages")
    assert post.path == f"/channels/{DM_CHANNEL_ID}/messages"
    ref = {"message_id": message.id, "channel_id": DM_CHANNEL_ID}  # no guild_id in a DM
    assert post.json["message_reference"] == ref
    assert "allowed_mentions" not in post.json  # unset: Discord's default pings everyone named

    # Opening a DM with someone else creates a channel, as POST /users/@me/channels does.
    guild = client.get_guild(GUILD_ID)
    admin = guild.get_member(ADMIN_ID) if guild else None
    assert admin is not None
    sent = await admin.send("hello admin")
    assert sent.channel.id not in (DM_CHANNEL_ID, CHANNEL_ID) and sent.content == "hello admin"
    (create,) = fake.calls_to("POST", "/users/@me/channels")
    assert create.json == {"recipient_id": ADMIN_ID}


async def test_slash_command_defer_and_ephemeral_followup(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    _, tree = await connect()
    seen: list[tuple[discord.Interaction, str, discord.WebhookMessage | None]] = []

    @tree.command(description="Ask the bot")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await interaction.response.defer()
        followup = await interaction.followup.send("x", ephemeral=True)  # waits: app webhook
        seen.append((interaction, question, followup))

    await tree.sync()
    options = {"question": "why?"}
    event = fake.interaction_create("ask", options, user=ADMIN_ID, channel_id=CHANNEL_ID)
    assert await fake.dispatch("INTERACTION_CREATE", event)

    (callback,) = await fake.wait_for("POST", "/interactions/{id}/{token}/callback")
    assert callback.path == f"/interactions/{event['id']}/{event['token']}/callback"
    assert callback.json == {"type": 5} and callback.query == {"with_response": "1"}
    (followup_call,) = await fake.wait_for("POST", "/webhooks/{app}/{token}")
    assert followup_call.path == f"/webhooks/{APPLICATION_ID}/{event['token']}"
    assert followup_call.json["content"] == "x" and followup_call.json["flags"] == 64
    assert followup_call.query["wait"] == "1"
    assert "Authorization" not in followup_call.headers  # the token in the URL is the auth

    interaction, question, followup = (await eventually(lambda: seen))[0]
    assert question == "why?" and interaction.guild_id == GUILD_ID
    assert isinstance(interaction.user, discord.Member) and interaction.user.id == ADMIN_ID
    assert interaction.permissions.manage_guild and interaction.channel_id == CHANNEL_ID
    assert followup is not None and followup.flags.ephemeral and followup.content == "x"

    # The deferred "thinking" message is the original response; editing it replaces it.
    await interaction.edit_original_response(content="done")
    (edit,) = await fake.wait_for("PATCH", "/webhooks/{app}/{token}/messages/@original")
    assert edit.json["content"] == "done"


async def test_button_click_reaches_view_and_on_interaction(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    client, _ = await connect()
    clicks: list[discord.Interaction] = []
    interactions: list[discord.Interaction] = []

    class Confirm(discord.ui.View):
        @discord.ui.button(label="Yes", custom_id="memory:confirm")
        async def confirm(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
            clicks.append(interaction)
            await interaction.response.edit_message(content="saved", view=None)

    @client.event
    async def on_interaction(interaction: discord.Interaction) -> None:
        interactions.append(interaction)

    channel = client.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    prompt = await channel.send("Save this memory?", view=Confirm())
    (post,) = fake.calls_to("POST", "/channels/{channel_id}/messages")
    assert post.json["components"][0]["components"][0]["custom_id"] == "memory:confirm"

    click = fake.component_interaction("memory:confirm", user=MEMBER_ID, channel_id=CHANNEL_ID)
    assert click["message"]["id"] == str(prompt.id)
    assert await fake.dispatch("INTERACTION_CREATE", click)
    (callback,) = await fake.wait_for("POST", "/interactions/{id}/{token}/callback")
    assert callback.json["type"] == 7  # UPDATE_MESSAGE: the clicked message is edited in place
    assert callback.json["data"] | {"content": "saved", "components": []} == callback.json["data"]
    (interaction,) = await eventually(lambda: clicks)
    assert interaction.user.id == MEMBER_ID and interaction.message is not None
    assert interaction.message.id == prompt.id
    assert interaction.data is not None and interaction.data["custom_id"] == "memory:confirm"
    assert [i.id for i in await eventually(lambda: interactions)] == [interaction.id]
    assert fake.messages[prompt.id]["content"] == "saved"


async def test_interactions_are_acked_once_in_time_before_followups(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """Discord drops an interaction not acknowledged within 3 s and refuses follow-ups
    before the acknowledgement: the rule that makes slow LLM replies defer first. The test
    closes the window itself (`ack_deadline = -1`), rather than racing a short one."""
    client, tree = await connect()
    outcomes: list[tuple[str, int]] = []

    @tree.command(description="Too slow")
    async def slow(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer()
        except discord.NotFound as e:
            outcomes.append(("late defer", e.code))

    @tree.command(description="Follow-up first")
    async def eager(interaction: discord.Interaction) -> None:
        try:
            await interaction.followup.send("too early")
        except discord.NotFound as e:
            outcomes.append(("early follow-up", e.code))
        await interaction.response.send_message("ok")

    await tree.sync()
    eager_event = fake.interaction_create("eager", user=MEMBER_ID, channel_id=CHANNEL_ID)
    await fake.dispatch("INTERACTION_CREATE", eager_event)
    await eventually(lambda: len(outcomes) == 1 and fake.calls_to("POST", CALLBACK))
    fake.ack_deadline = -1.0  # from now on every interaction's 3 s have passed
    slow_event = fake.interaction_create("slow", user=MEMBER_ID, channel_id=CHANNEL_ID)
    await fake.dispatch("INTERACTION_CREATE", slow_event)
    await eventually(lambda: len(outcomes) == 2)
    assert outcomes == [("early follow-up", 10015), ("late defer", 10062)]
    callbacks = fake.calls_to("POST", CALLBACK)
    ok = [c for c in callbacks if c.json["type"] == 4]
    assert len(ok) == 1

    # A second acknowledgement of the same interaction is refused (discord.py guards this
    # locally, so ask over HTTP directly, as a bot bypassing it would).
    with pytest.raises(discord.HTTPException) as refused:
        await client.http.request(Route("POST", ok[0].path), json={"type": 5})
    assert (refused.value.status, refused.value.code) == (400, 40060)


async def test_a_view_sent_as_a_followup_takes_deferred_clicks(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """The pattern slow commands use: defer, send the buttons as an (ephemeral) follow-up,
    and answer a press with a deferred update (type 6) and then an edit of `@original`,
    which for a click is the message clicked."""
    _, tree = await connect()
    pressed: list[int] = []

    class Confirm(discord.ui.View):
        @discord.ui.button(label="Erase", custom_id="erase")
        async def erase(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
            await interaction.response.defer()
            assert interaction.message is not None
            pressed.append(interaction.message.id)
            await interaction.edit_original_response(content="erased", view=None)

    @tree.command(description="Ask first")
    async def wipe(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        sent = await interaction.followup.send("Sure?", view=Confirm(), ephemeral=True)
        assert isinstance(sent, discord.WebhookMessage)

    await tree.sync()
    wipe_event = fake.interaction_create("wipe", user=MEMBER_ID, channel_id=CHANNEL_ID)
    await fake.dispatch("INTERACTION_CREATE", wipe_event)
    (followup,) = await fake.wait_for("POST", "/webhooks/{app}/{token}")
    assert followup.json["flags"] == 64 and followup.json["components"]
    prompt = fake.sent[-1]
    click = fake.component_interaction(
        "erase", user=MEMBER_ID, channel_id=CHANNEL_ID, message=prompt
    )
    await fake.dispatch("INTERACTION_CREATE", click)
    (edit,) = await fake.wait_for("PATCH", "/webhooks/{app}/{token}/messages/{message_id}")
    assert edit.path.endswith("/@original") and edit.json["content"] == "erased"
    callback = fake.calls_to("POST", "/interactions/{id}/{token}/callback")[-1]
    assert callback.json == {"type": 6}  # DEFERRED_UPDATE_MESSAGE
    assert pressed == [int(prompt["id"])]
    assert fake.messages[int(prompt["id"])]["content"] == "erased"
    assert fake.messages[int(prompt["id"])]["components"] == []


async def test_clients_sharing_a_token_each_get_every_event(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """Two processes running one bot (replicas, same token, no sharding) each hold a
    gateway connection, and Discord sends each of them every event."""
    received: list[list[discord.Message]] = [[], []]
    for into in received:
        client, _ = await connect()
        client.event(collect(into))
    await fake.ready(connections=2)
    event = fake.message_create(MEMBER_ID, "hello both", channel_id=CHANNEL_ID)
    assert await fake.dispatch("MESSAGE_CREATE", event)
    await eventually(lambda: all(received))
    assert [[m.id for m in got] for got in received] == [[int(event["id"])]] * 2


async def test_an_interaction_sent_twice_is_acknowledged_once(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    """Two clients on one token (replicas) both receive an interaction: it is still one
    interaction, and the second acknowledgement is refused with 40060."""
    _, tree = await connect()
    outcomes: list[int] = []

    @tree.command(description="Once")
    async def once(interaction: discord.Interaction) -> None:
        try:
            await interaction.response.defer()
            outcomes.append(0)
        except discord.HTTPException as err:
            outcomes.append(err.code)

    await tree.sync()
    event = fake.interaction_create("once", user=MEMBER_ID, channel_id=CHANNEL_ID)
    for _ in range(2):
        await fake.dispatch("INTERACTION_CREATE", event)
    await eventually(lambda: len(outcomes) == 2)
    assert sorted(outcomes) == [0, 40060]


async def test_rest_errors_look_like_discord(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    client, _ = await connect()
    channel = client.get_channel(CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)

    with pytest.raises(discord.HTTPException) as empty:
        await channel.send()
    assert (empty.value.status, empty.value.code) == (400, 50006)
    with pytest.raises(discord.HTTPException) as too_long:
        await channel.send("x" * 2001)
    assert (too_long.value.status, too_long.value.code) == (400, 50035)
    assert "content" in too_long.value.text
    with pytest.raises(discord.HTTPException) as dangling:
        await channel.send("re", reference=discord.PartialMessage(channel=channel, id=1))
    assert dangling.value.code == 50035
    with pytest.raises(discord.NotFound) as unknown_channel:
        await client.fetch_channel(42)
    assert unknown_channel.value.code == 10003
    assert (await client.fetch_channel(CHANNEL_ID)).id == CHANNEL_ID

    with pytest.raises(discord.NotFound):
        await client.http.request(Route("GET", "/guilds/{guild_id}/audit-logs", guild_id=GUILD_ID))
    assert fake.calls_to("GET", "/guilds/{guild_id}/audit-logs")

    other = discord.Client(intents=bot_intents())
    with pytest.raises(discord.LoginFailure):
        await other.login("wrong-token")
    await other.close()


async def test_reconnect_resumes_the_session(
    fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]
):
    client, _ = await connect()
    resumed: list[bool] = []
    received: list[discord.Message] = []
    client.event(collect(received))

    @client.event
    async def on_resumed() -> None:
        resumed.append(True)

    first = fake.message_create(MEMBER_ID, "before", channel_id=CHANNEL_ID)
    await fake.dispatch("MESSAGE_CREATE", first)
    await eventually(lambda: received)
    await fake.reconnect()
    await eventually(lambda: resumed)
    (resume,) = fake.resumes
    assert resume["session_id"] == fake.session_id and resume["token"] == "fake-token"
    assert resume["seq"] == 4  # READY, GUILD_CREATE, GUILD_MEMBERS_CHUNK, MESSAGE_CREATE

    after = fake.message_create(MEMBER_ID, "after", channel_id=CHANNEL_ID)
    await fake.dispatch("MESSAGE_CREATE", after)
    await eventually(lambda: len(received) == 2)
    assert [m.content for m in received] == ["before", "after"]


async def test_close_is_clean(fake: FakeDiscord, connect: Callable[..., Awaitable[Bot]]):
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: problems.append(context))
    before = asyncio.all_tasks()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client, _ = await connect()
            channel = client.get_channel(CHANNEL_ID)
            assert isinstance(channel, discord.TextChannel)
            async with channel.typing():
                await channel.send("bye")
            await client.close()
            assert client.is_closed()
            current = asyncio.current_task()
            await eventually(lambda: not (asyncio.all_tasks() - before - {current}))
            await eventually(
                lambda: not any(isinstance(t, KeepAliveHandler) for t in threading.enumerate())
            )
            gc.collect()
        assert [str(w.message) for w in caught] == []
        assert problems == []
    finally:
        loop.set_exception_handler(None)
