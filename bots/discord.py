"""The Discord adapter, on discord.py: `discord.Client` + `app_commands.CommandTree`.

discord.py speaks the gateway and REST; this module maps messages and slash commands
to `(thread_id, user_id, text)`, calls the engine and renders the reply.

Identity:
- user: `discord:<guild_id>:<user_id>` (memories are per server, so what someone said
  in one server never surfaces in another), `discord:dm:<user_id>` in DMs; with
  `MEMBOT_DISCORD_MEMORY_SCOPE=global` one set per person: `discord:<user_id>`;
- thread: `discord:<guild_id or dm>:<channel_id>`; a Discord thread is a channel of its
  own, so it is its own conversation.

Delivery goes through the engine's turn pipeline (engine/turns.py): a message or `/ask`
is accepted into the inbox under Discord's id for it before any work, so a second
delivery (a gateway replay, another replica on the same token) is answered once, and one
a dead process had accepted is answered by whoever takes it over, where delivery left off.

Every interaction is acknowledged (deferred) before the engine is called: Discord drops
one not acknowledged within 3 seconds, and a memory lookup waits for learning in progress.

Answers stream (bots/discord_stream.py): typing until the model's first text, then a
message edited as the text grows (paced per channel), continued in further messages past
2,000 characters; an `/ask` streams into its deferred response and follow-ups. Progress is
saved on the ticket, so a takeover finishes the messages already posted.

`/memories` is a paged, ephemeral list with Edit and Delete, `/export` a JSON file
(bots/discord_memories.py). `/link` gives a one-time code (or, given one, joins this account
with the one that asked for it: one person, memories shared); `/unlink` separates them.

Every message is sent and edited with `AllowedMentions.none()`, so nothing a model (or a
stored memory) writes can ping @everyone, a role or a user.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import discord
import yarl
from discord import app_commands

from bots.chunking import split_message
from bots.discord_memories import send_export, send_memories
from bots.discord_stream import (
    MESSAGE_LIMIT,
    NO_PINGS,
    ChannelOutlet,
    Delivery,
    Held,
    InteractionOutlet,
    Outlet,
    Pacer,
    Postable,
)
from bots.replies import FILES_ONLY, TROUBLE
from engine.bot import MemoryBot
from engine.inbox import Inbound
from engine.settings import Settings
from engine.turns import Ticket

logger = logging.getLogger(__name__)

USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)
# Discord's error codes: a second acknowledgement of one interaction (another replica
# acknowledged it first), and an interaction whose 3-second window has closed.
ALREADY_ACKNOWLEDGED, UNKNOWN_INTERACTION = 40060, 10062
# Follow-ups to an acknowledged interaction are accepted for 15 minutes; a taken-over
# `/ask` older than this (with a margin) is answered in its channel instead.
FOLLOWUP_WINDOW = timedelta(minutes=14)
# Channels a message can be posted and replied to in (a forum or category cannot).
REPLYABLE = (
    discord.TextChannel,
    discord.VoiceChannel,
    discord.StageChannel,
    discord.Thread,
    discord.DMChannel,
)
POSTABLE = (*REPLYABLE, discord.PartialMessageable)  # also a channel discord.py has not cached
Replyable = (
    discord.TextChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.Thread
    | discord.DMChannel
)


def user_key(settings: Settings, guild_id: int | None, user_id: int) -> str:
    if settings.discord_memory_scope == "global":
        return f"discord:{user_id}"
    return f"discord:{guild_id if guild_id is not None else 'dm'}:{user_id}"


def thread_key(guild_id: int | None, channel_id: int) -> str:
    return f"discord:{guild_id if guild_id is not None else 'dm'}:{channel_id}"


def message_key(message_id: int) -> str:
    """A message's identity in the inbox: Discord's snowflake is unique across all of
    Discord, so every delivery of one message (and every replica) shares it."""
    return f"discord:msg:{message_id}"


def interaction_key(interaction_id: int) -> str:
    return f"discord:interaction:{interaction_id}"


def owner_ids(settings: Settings) -> frozenset[int]:
    """`MEMBOT_DISCORD_OWNERS` as ids (the setting's pattern admits digits and commas only)."""
    return frozenset(int(i) for i in settings.discord_owners.split(",") if i.strip())


def intents_for(settings: Settings) -> discord.Intents:
    intents = discord.Intents.default()  # guilds, guild and DM messages; no privileged ones
    intents.message_content = settings.discord_message_content
    return intents


def sharding(spec: str) -> tuple[bool, int | None, list[int] | None]:
    """(sharded?, shard_count, shard_ids) from `MEMBOT_DISCORD_SHARDS`."""
    if spec == "off":
        return False, None, None
    if spec == "auto":
        return True, None, None
    count, _, ids = spec.partition(":")
    shard_ids = [int(i) for i in ids.split(",")] if ids else None
    if shard_ids and not all(0 <= i < int(count) for i in shard_ids):
        raise ValueError(f"MEMBOT_DISCORD_SHARDS={spec}: shard ids must be below {count}")
    return True, int(count), shard_ids


def make_client(settings: Settings, **options: Any) -> discord.Client:
    """A plain `Client` (one gateway connection, up to ~2,500 guilds), or discord.py's
    `AutoShardedClient`, which runs several shards over one event loop; with shard ids,
    each replica runs its own share of the shards."""
    # The bot never joins voice: discord.py's start-up warnings that voice libraries are
    # missing are noise in every log (they are class flags it checks once, for this).
    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
    sharded, count, ids = sharding(settings.discord_shards)
    common: dict[str, Any] = {"intents": intents_for(settings), "allowed_mentions": NO_PINGS}
    if not sharded:
        return discord.Client(**common, **options)
    return discord.AutoShardedClient(**common, shard_count=count, shard_ids=ids, **options)


class DiscordAdapter:
    def __init__(self, bot: MemoryBot, settings: Settings, **client_options: Any) -> None:
        self.bot = bot
        self.settings = settings
        self.owners = owner_ids(settings)
        self.pacer = Pacer()  # one per bot: Discord's limits are per channel
        # Conversations with an answer on its way: it streams before the turn is saved, and
        # a follow-up sent meanwhile is to the bot as much as one after it.
        self.answering: Counter[str] = Counter()
        self.client = make_client(settings, **client_options)
        self.tree = app_commands.CommandTree(self.client)
        self.client.setup_hook = self._setup  # type: ignore[method-assign]
        self.client.event(self.on_message)
        self._register_commands()

    async def _setup(self) -> None:
        """discord.py's setup hook: after login, before the gateway connects. Messages a
        dead process accepted are taken over from here on (REST alone delivers them), then
        the slash commands are synced."""
        self.bot.watch_orphans("discord", self._resume)
        if self.settings.discord_guild_id:
            guild = discord.Object(self.settings.discord_guild_id)
            self.tree.copy_global_to(guild=guild)
            await self.tree.sync(guild=guild)
        else:
            await self.tree.sync()

    # -- messages ------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return  # other bots and ourselves: never answer, never loop
        if message.type not in USER_MESSAGES:
            return  # joins, pins, thread renames, ...
        in_dm = isinstance(message.channel, discord.DMChannel)
        if message.guild is None and not in_dm:
            return  # a server discord.py has not cached: never mistake it for a DM
        if not isinstance(message.channel, POSTABLE):
            return  # not a channel one can post in (a group DM: bots are never in one)
        guild_id = message.guild.id if message.guild else None
        if guild_id is not None and not await self._addressed(message, me):
            return
        await self._answer(message, message.channel, guild_id, me)

    async def _addressed(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """In a server: a mention of us (not @everyone), or a thread we take part in. The
        latter needs the message content intent: without it Discord sends such messages
        with empty content, and the bot stays quiet rather than answer what it can't read."""
        if any(user.id == me.id for user in message.mentions):
            return True
        channel = message.channel
        if isinstance(channel, discord.Thread) and self.settings.discord_message_content:
            thread = thread_key(channel.guild.id, channel.id)
            if channel.owner_id == me.id or self.answering[thread]:
                return True
            return await self.bot.takes_part_in(thread)
        return False

    async def _answer(
        self, message: discord.Message, channel: Postable, guild_id: int | None, me: Any
    ) -> None:
        text = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        inbound = Inbound(
            key=message_key(message.id),
            platform="discord",
            user_id=user_key(self.settings, guild_id, message.author.id),
            thread_id=thread_key(guild_id, message.channel.id),
            text=text,
            # Its episode is written once per message and dated when it was sent.
            message_id=str(message.id),
            at=message.created_at,
            route={"channel": message.channel.id, "message": message.id},
        )
        ticket = await self.bot.accept(inbound)
        if ticket is None:
            logger.info("discord: message %s was taken on before; not answered again", message.id)
            return
        try:
            if not text and message.attachments:
                await ticket.note(reply=FILES_ONLY)
            reply_to = message.to_reference(fail_if_not_exists=False)
            outlet = ChannelOutlet(channel, reply_to, key=ticket.inbound.key)
            await self._complete(ticket, outlet, channel)
        except Exception:
            logger.exception("discord: answering message %s failed", message.id)
        finally:
            await ticket.release()  # a no-op after done(); else left for a takeover

    async def _resume(self, ticket: Ticket) -> None:
        """A message (or `/ask`) a dead process accepted: answered where it left off. A
        channel we can no longer reach has nobody to tell: the entry is closed."""
        reached = await self._reach(ticket)
        if reached is None:
            logger.info("discord: %s can no longer be answered; closed", ticket.inbound.key)
            await ticket.done()
            return
        outlet, channel = reached
        await self._complete(ticket, outlet, channel)

    async def _reach(self, ticket: Ticket) -> tuple[Outlet, Replyable | None] | None:
        """Where a taken-over answer goes: the `/ask`'s response and follow-ups (through
        its webhook) while Discord still accepts them; else its channel, as a reply to the
        message (posted plainly in the channel if that message was deleted)."""
        route = ticket.route
        followup = route.get("interaction")
        if followup and datetime.now(UTC) < ticket.inbound.at + FOLLOWUP_WINDOW:
            webhook = discord.Webhook.partial(
                int(followup["application"]), str(followup["token"]), client=self.client
            )
            return InteractionOutlet(webhook, lane=int(route.get("channel") or 0)), None
        channel = await self._channel(route.get("channel"))
        if channel is None:
            return None
        message_id = route.get("message")
        reply_to = (
            channel.get_partial_message(int(message_id)).to_reference(fail_if_not_exists=False)
            if message_id
            else None
        )
        return ChannelOutlet(channel, reply_to, key=ticket.inbound.key), channel

    async def _channel(self, channel_id: Any) -> Replyable | None:
        """The channel, from discord.py's cache or REST (a DM is not cached after a
        restart); None when it is gone or closed to us."""
        if not channel_id:
            return None
        try:
            channel = self.client.get_channel(int(channel_id)) or await self.client.fetch_channel(
                int(channel_id)
            )
        except (discord.NotFound, discord.Forbidden):
            return None
        return channel if isinstance(channel, REPLYABLE) else None

    async def _complete(
        self, ticket: Ticket, outlet: Outlet, typing_in: discord.abc.Messageable | None
    ) -> None:
        """Answer, streaming into `outlet` (typing in `typing_in` until the first text), and
        close. A failure to answer is delivered as an apology; Discord struggling (429 or
        5xx past discord.py's own retries) leaves the entry open for a later sweep, which
        finishes the messages already posted; a place we may no longer post to has nobody
        to tell, and the entry is closed."""
        try:
            with self._answering_in(ticket.inbound.thread_id):
                await Delivery(ticket, outlet, self.pacer).run(typing_in)
        except discord.HTTPException as err:
            if err.status == 429 or err.status >= 500:
                logger.warning("discord: delivery postponed (HTTP %s)", err.status)
                return
            logger.warning(
                "discord: could not deliver the answer (HTTP %s, code %s)", err.status, err.code
            )
        await ticket.done()

    @contextlib.contextmanager
    def _answering_in(self, thread: str) -> Iterator[None]:
        """`thread` has an answer on its way while this lasts (see `answering`)."""
        self.answering[thread] += 1
        try:
            yield
        finally:
            self.answering[thread] -= 1
            if not self.answering[thread]:
                del self.answering[thread]

    # -- slash commands --------------------------------------------------------------------

    def _register_commands(self) -> None:
        tree = self.tree

        @tree.command(description="Ask the bot something in this channel's conversation")
        @app_commands.describe(question="What you want to ask")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            # Acknowledge first, then take on. Discord's acknowledgement is atomic, so it
            # decides which replica answers (the others get 40060 and stop here), and the
            # 3-second window never waits on our database. The inbox entry that follows
            # makes the answer survive a crash: it holds the follow-up token (valid for 15
            # minutes, good for this interaction only, erased once answered).
            deferred = await _defer(interaction, thinking=True)
            if deferred is None:
                return
            channel_id = interaction.channel_id or 0
            route: dict[str, Any] = {
                "channel": channel_id,
                "interaction": {
                    "application": interaction.application_id,
                    "token": interaction.token,
                },
            }
            if deferred.original is not None:  # the answer's first message, to be edited
                route |= {"via": "interaction", "messages": [Held(deferred.original).saved()]}
            ticket = await self.bot.accept(
                Inbound(
                    key=interaction_key(interaction.id),
                    platform="discord",
                    user_id=self._caller(interaction),
                    thread_id=thread_key(interaction.guild_id, channel_id),
                    text=question,
                    message_id=str(interaction.id),
                    at=interaction.created_at,
                    route=route,
                )
            )
            if ticket is None:
                # Shutting down: it waits in the inbox, and whoever takes it over answers
                # through the follow-up webhook (it is acknowledged, so it can wait).
                return
            outlet = InteractionOutlet(interaction.followup, channel_id, interaction)
            try:
                await self._complete(ticket, outlet, None)
            finally:
                await ticket.release()

        @tree.command(description="What the bot remembers about you (only you see it)")
        async def memories(interaction: discord.Interaction) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            # A page at a time, with buttons to page, edit and delete (bots/discord_memories.py).
            await send_memories(self.bot, interaction, self._caller(interaction))

        @tree.command(description="Download what the bot holds about you, as JSON (only you)")
        async def export(interaction: discord.Interaction) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            await send_export(self.bot, interaction, self._caller(interaction))

        @tree.command(description="Tell the bot a fact to remember about you")
        @app_commands.describe(fact="For example: I'm vegetarian")
        async def remember(interaction: discord.Interaction, fact: str) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            stored = await self.bot.remember(
                self._caller(interaction),
                fact,
                source_thread=thread_key(interaction.guild_id, interaction.channel_id or 0),
            )
            text = (
                f"Remembered: {stored[0].value['text']}"
                if stored
                else "That was empty; nothing to remember."
            )
            await interaction.followup.send(split_message(text, MESSAGE_LIMIT)[0], ephemeral=True)

        @tree.command(description="Erase what the bot remembers about you")
        async def forget(interaction: discord.Interaction) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            await self._ask_to_forget(interaction, self._caller(interaction), "your")

        @tree.command(description="Link this account with your other one (Slack or Discord)")
        @app_commands.describe(code="The code /link gave you on your other account")
        async def link(interaction: discord.Interaction, code: str | None = None) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            caller = self._caller(interaction)
            if code:
                text = (await self.bot.link(caller, code)).message
            else:
                text = await self._link_code_text(caller)
            await interaction.followup.send(split_message(text, MESSAGE_LIMIT)[0], ephemeral=True)

        @tree.command(description="Separate this account from the accounts linked to it")
        async def unlink(interaction: discord.Interaction) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            result = await self.bot.unlink(self._caller(interaction))
            await interaction.followup.send(
                split_message(result.message, MESSAGE_LIMIT)[0], ephemeral=True
            )

        @tree.command(name="forget-user", description="Erase a member's memories (admins)")
        @app_commands.describe(user="Whose memories to erase")
        @app_commands.guild_only()
        @app_commands.default_permissions(manage_guild=True)
        async def forget_user(interaction: discord.Interaction, user: discord.Member) -> None:
            if not await _acknowledge(interaction, ephemeral=True, thinking=True):
                return
            if refusal := self._refuse_erasing_others(interaction):
                await interaction.followup.send(refusal, ephemeral=True)
                return
            target = user_key(self.settings, interaction.guild_id, user.id)
            await self._ask_to_forget(interaction, target, f"{user.display_name}'s")

        @tree.error
        async def on_command_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            if isinstance(error, app_commands.CommandNotFound):
                text = "I don't know that command (it may have been removed). Try /ask."
            elif isinstance(error, app_commands.CheckFailure):
                text = "You can't use that command here."
            else:
                logger.error("discord: command failed", exc_info=error)
                text = TROUBLE
            try:
                if interaction.response.is_done():
                    await interaction.followup.send(text, ephemeral=True)
                else:
                    await interaction.response.send_message(text, ephemeral=True)
            except discord.HTTPException as err:  # the interaction expired: nobody to tell
                logger.warning("discord: could not answer a failed command (HTTP %s)", err.status)

    def _caller(self, interaction: discord.Interaction) -> str:
        return user_key(self.settings, interaction.guild_id, interaction.user.id)

    async def _link_code_text(self, caller: str) -> str:
        """`/link` without a code: a new one, how to use it, and who is linked already."""
        issued = await self.bot.link_code(caller)
        minutes = max(1, round((issued.expires_at - datetime.now(UTC)).total_seconds() / 60))
        text = (
            f"Your link code: **{issued.code}** (works once, for {minutes} minute"
            f"{'s' if minutes != 1 else ''}). On your "
            "other account (Slack, or this bot in another Discord server), type "
            f"`/link {issued.code}` and I'll remember you as one person on both."
        )
        others = len(await self.bot.linked_accounts(caller)) - 1
        if others > 0:
            text += (
                f"\nThis account is already linked with {others} other account"
                f"{'s' if others > 1 else ''}; /unlink separates it from them."
            )
        return text

    def _refuse_erasing_others(self, interaction: discord.Interaction) -> str | None:
        """Why `interaction.user` may not erase someone else's memories, or None if they
        may. Per server, that server's admins decide. With the global scope a person's
        memories are shared by every server, so no one server's admins may erase them:
        only the bot's owners (MEMBOT_DISCORD_OWNERS)."""
        if self.settings.discord_memory_scope == "global":
            if interaction.user.id in self.owners:
                return None
            return (
                "Memories here are shared across every server, so only the bot's owners can "
                "erase someone else's. Nothing was erased. (Anyone can erase their own with "
                "/forget.)"
            )
        if _is_admin(interaction):  # server admins can override the default permission
            return None
        return (
            "Only members with Manage Server can erase someone else's memories. Nothing was erased."
        )

    async def _ask_to_forget(
        self, interaction: discord.Interaction, target: str, whose: str
    ) -> None:
        """The confirmation, as a follow-up (the interaction is deferred already); its
        buttons work as on any message, discord.py keeps the view for the message id."""
        mine = target == self._caller(interaction)
        count = await self.bot.count_memories(target, said_on_this_account=not mine)
        if not count:
            await interaction.followup.send(
                f"There is nothing to forget: I hold none of {whose} memories.", ephemeral=True
            )
            return
        question = f"Erase all {count} of {whose} memories?"
        if not mine and len(await self.bot.linked_accounts(target)) > 1:
            question = (
                f"Erase the {count} of {whose} memories given in this server? Their account "
                "is linked elsewhere: it will be unlinked, and what they said there stays."
            )
        view = ForgetConfirmation(self, asker=interaction.user.id, target=target, whose=whose)
        await interaction.followup.send(question, view=view, ephemeral=True)

    async def run(self) -> None:
        """Connect and serve until cancelled. A token or intent Discord refuses is a
        `ConfigError` naming the variable: discord.py's own exception, wrapped in the
        command's task group, printed dozens of lines and never said which setting."""
        # Imported here, not at the top: this method is this module's only user of it.
        from engine.errors import ConfigError

        if not self.settings.discord_token:
            raise RuntimeError("DISCORD_TOKEN is not set")
        _point_discord_py(self.settings)
        try:
            async with self.client:
                await self.client.start(self.settings.discord_token.get_secret_value())
        except discord.LoginFailure as err:
            raise ConfigError(
                "DISCORD_TOKEN",
                f"Discord refused DISCORD_TOKEN ({err}). Copy the bot token from the Developer "
                "Portal (Applications > your app > Bot > Reset Token) into DISCORD_TOKEN.",
            ) from err
        except discord.PrivilegedIntentsRequired as err:
            raise ConfigError(
                "MEMBOT_DISCORD_MESSAGE_CONTENT",
                "Discord refused the message content intent that "
                "MEMBOT_DISCORD_MESSAGE_CONTENT=true requests. Enable Message Content Intent "
                "in the Developer Portal (Bot > Privileged Gateway Intents), or set "
                "MEMBOT_DISCORD_MESSAGE_CONTENT=false.",
            ) from err


def _point_discord_py(settings: Settings) -> None:
    """discord.py reads its REST base and gateway from class attributes; these are its
    process-wide settings, so they are set here, once, when the bot starts."""
    if settings.discord_api_url:
        discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def _is_admin(interaction: discord.Interaction) -> bool:
    permissions = interaction.permissions
    return bool(interaction.guild_id and (permissions.manage_guild or permissions.administrator))


@dataclass(frozen=True)
class Deferred:
    """An interaction we acknowledged. `original`: the id of its response (the "thinking…"
    message an `/ask` answers in), when Discord said it."""

    original: int | None


async def _acknowledge(
    interaction: discord.Interaction, *, ephemeral: bool = False, thinking: bool = False
) -> bool:
    """Defer the interaction (see `_defer`); False when there is nobody to answer here."""
    return await _defer(interaction, ephemeral=ephemeral, thinking=thinking) is not None


async def _defer(
    interaction: discord.Interaction, *, ephemeral: bool = False, thinking: bool = False
) -> Deferred | None:
    """Defer the interaction: Discord's 3-second deadline is met before any engine call
    (which may wait seconds for learning in progress). None when there is nobody to
    answer here: another replica acknowledged it first (40060), or it arrived too late."""
    try:
        callback = await interaction.response.defer(ephemeral=ephemeral, thinking=thinking)
    except discord.HTTPException as err:
        if err.code == ALREADY_ACKNOWLEDGED:
            logger.debug("discord: interaction %s is another replica's", interaction.id)
            return None
        if err.code == UNKNOWN_INTERACTION:
            logger.warning(
                "discord: interaction %s expired before it was acknowledged", interaction.id
            )
            return None
        raise
    return Deferred(callback.message_id if callback is not None else None)


class ForgetConfirmation(discord.ui.View):
    """Erase / Cancel buttons; only the member who asked can press them. A press is
    deferred (an update) before the erasure, which waits for learning in progress, and
    the confirmation is then edited into the outcome."""

    def __init__(self, adapter: DiscordAdapter, *, asker: int, target: str, whose: str) -> None:
        super().__init__(timeout=300)
        self.adapter, self.asker, self.target, self.whose = adapter, asker, target, whose

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.asker:
            await interaction.response.send_message("This isn't your button.", ephemeral=True)
            return False
        return True

    @discord.ui.button(label="Erase", style=discord.ButtonStyle.danger, custom_id="forget:erase")
    async def erase(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        if not await _acknowledge(interaction):
            return
        adapter = self.adapter
        mine = self.target == adapter._caller(interaction)
        if not mine and adapter._refuse_erasing_others(interaction):
            await interaction.edit_original_response(content="You can't erase these.", view=None)
            self.stop()
            return
        if mine:
            erased = await adapter.bot.forget(self.target)
        else:
            erased = await adapter.bot.erase_member(
                self.target, actor=adapter._caller(interaction), platform="discord"
            )
        await interaction.edit_original_response(
            content=f"Done: erased {erased} of {self.whose} memories.", view=None
        )
        self.stop()

    @discord.ui.button(
        label="Cancel", style=discord.ButtonStyle.secondary, custom_id="forget:cancel"
    )
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        if not await _acknowledge(interaction):
            return
        await interaction.edit_original_response(
            content="Cancelled. Nothing was erased.", view=None
        )
        self.stop()
