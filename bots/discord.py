"""The Discord adapter, on discord.py: `discord.Client` + `app_commands.CommandTree`.

discord.py speaks the gateway and REST; this module maps messages and slash commands
to `(thread_id, user_id, text)`, calls the engine and renders the reply.

Identity:
- user: `discord:<guild_id>:<user_id>` (memories are per server, so what someone said
  in one server never surfaces in another), `discord:dm:<user_id>` in DMs; with
  `MEMBOT_DISCORD_MEMORY_SCOPE=global` one set per person: `discord:<user_id>`;
- thread: `discord:<guild_id or dm>:<channel_id>`; a Discord thread is a channel of its
  own, so it is its own conversation.

Every message is sent with `AllowedMentions.none()`, so nothing a model (or a stored
memory) writes can ping @everyone, a role or a user.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
import yarl
from discord import app_commands

from bots.audit import AuditLog
from bots.chunking import split_message
from bots.replies import FILES_ONLY, TROUBLE
from engine.bot import MemoryBot, Reply
from engine.settings import Settings

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 2_000
NO_PINGS = discord.AllowedMentions.none()
USER_MESSAGES = (discord.MessageType.default, discord.MessageType.reply)


def user_key(settings: Settings, guild_id: int | None, user_id: int) -> str:
    if settings.discord_memory_scope == "global":
        return f"discord:{user_id}"
    return f"discord:{guild_id if guild_id is not None else 'dm'}:{user_id}"


def thread_key(guild_id: int | None, channel_id: int) -> str:
    return f"discord:{guild_id if guild_id is not None else 'dm'}:{channel_id}"


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
    sharded, count, ids = sharding(settings.discord_shards)
    common: dict[str, Any] = {"intents": intents_for(settings), "allowed_mentions": NO_PINGS}
    if not sharded:
        return discord.Client(**common, **options)
    return discord.AutoShardedClient(**common, shard_count=count, shard_ids=ids, **options)


class DiscordAdapter:
    def __init__(self, bot: MemoryBot, settings: Settings, **client_options: Any) -> None:
        self.bot = bot
        self.settings = settings
        self.audit = AuditLog(settings.audit_log_path)
        self.client = make_client(settings, **client_options)
        self.tree = app_commands.CommandTree(self.client)
        self.client.setup_hook = self._sync_commands  # type: ignore[method-assign]
        self.client.event(self.on_message)
        self._register_commands()

    async def _sync_commands(self) -> None:
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
        guild_id = message.guild.id if message.guild else None
        if guild_id is not None and not await self._addressed(message, me):
            return
        try:
            await self._answer(message, guild_id, me)
        except Exception:
            logger.exception("discord: answering in channel %s failed", message.channel.id)
            try:
                await message.reply(TROUBLE, mention_author=False)
            except discord.HTTPException as err:  # message deleted, no access: nobody to tell
                logger.warning("discord: could not post the apology (HTTP %s)", err.status)

    async def _addressed(self, message: discord.Message, me: discord.ClientUser) -> bool:
        """In a server: a mention of us (not @everyone), or a thread we take part in. The
        latter needs the message content intent: without it Discord sends such messages
        with empty content, and the bot stays quiet rather than answer what it can't read."""
        if any(user.id == me.id for user in message.mentions):
            return True
        channel = message.channel
        if isinstance(channel, discord.Thread) and self.settings.discord_message_content:
            return channel.owner_id == me.id or bool(
                await self.bot.history(thread_key(channel.guild.id, channel.id))
            )
        return False

    async def _answer(self, message: discord.Message, guild_id: int | None, me: Any) -> None:
        text = re.sub(rf"<@!?{me.id}>", "", message.content).strip()
        if not text and message.attachments:
            await message.reply(FILES_ONLY, mention_author=False)
            return
        async with message.channel.typing():
            reply = await self.bot.chat(
                user_id=user_key(self.settings, guild_id, message.author.id),
                thread_id=thread_key(guild_id, message.channel.id),
                text=text,
                # Its episode is written once per message and dated when it was sent.
                message_id=str(message.id),
                at=message.created_at,
            )
        first, *rest = split_message(reply.text, MESSAGE_LIMIT)
        await message.reply(first, mention_author=False)
        for part in rest:
            await message.channel.send(part)

    # -- slash commands --------------------------------------------------------------------

    def _register_commands(self) -> None:
        tree = self.tree

        @tree.command(description="Ask the bot something in this channel's conversation")
        @app_commands.describe(question="What you want to ask")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            await interaction.response.defer(thinking=True)
            try:
                reply = await self.bot.chat(
                    user_id=self._caller(interaction),
                    thread_id=thread_key(interaction.guild_id, interaction.channel_id or 0),
                    text=question,
                )
            except Exception:
                logger.exception("discord: /ask failed")
                reply = Reply(TROUBLE, "", False, error=True)
            for part in split_message(reply.text, MESSAGE_LIMIT):
                await interaction.followup.send(part)

        @tree.command(description="What the bot remembers about you (only you see it)")
        async def memories(interaction: discord.Interaction) -> None:
            items = await self.bot.memories(self._caller(interaction))
            if not items:
                text = "I don't remember anything about you yet."
            else:
                lines = [f"{n}. {i.value.get('text', '')}" for n, i in enumerate(items, 1)]
                text = "What I remember about you:\n" + "\n".join(lines)
            await interaction.response.send_message(
                split_message(text, MESSAGE_LIMIT)[0], ephemeral=True
            )

        @tree.command(description="Tell the bot a fact to remember about you")
        @app_commands.describe(fact="For example: I'm vegetarian")
        async def remember(interaction: discord.Interaction, fact: str) -> None:
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
            await interaction.response.send_message(text, ephemeral=True)

        @tree.command(description="Erase what the bot remembers about you")
        async def forget(interaction: discord.Interaction) -> None:
            await self._ask_to_forget(interaction, self._caller(interaction), "your")

        @tree.command(name="forget-user", description="Erase a member's memories (admins)")
        @app_commands.describe(user="Whose memories to erase")
        @app_commands.guild_only()
        @app_commands.default_permissions(manage_guild=True)
        async def forget_user(interaction: discord.Interaction, user: discord.Member) -> None:
            if not _is_admin(interaction):  # server admins can override the default
                await interaction.response.send_message(
                    "Only members with Manage Server can erase someone else's memories. "
                    "Nothing was erased.",
                    ephemeral=True,
                )
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

    async def _ask_to_forget(
        self, interaction: discord.Interaction, target: str, whose: str
    ) -> None:
        count = await self.bot.count_memories(target)
        if not count:
            await interaction.response.send_message(
                f"There is nothing to forget: I hold none of {whose} memories.", ephemeral=True
            )
            return
        view = ForgetConfirmation(self, asker=interaction.user.id, target=target, whose=whose)
        await interaction.response.send_message(
            f"Erase all {count} of {whose} memories?", view=view, ephemeral=True
        )

    async def run(self) -> None:
        if not self.settings.discord_token:
            raise RuntimeError("DISCORD_TOKEN is not set")
        _point_discord_py(self.settings)
        async with self.client:
            await self.client.start(self.settings.discord_token.get_secret_value())


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


class ForgetConfirmation(discord.ui.View):
    """Erase / Cancel buttons; only the member who asked can press them."""

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
        mine = self.target == self.adapter._caller(interaction)
        if not mine and not _is_admin(interaction):
            await interaction.response.edit_message(content="You can't erase these.", view=None)
            return
        erased = await self.adapter.bot.forget(self.target)
        if not mine:
            await self.adapter.audit.record(
                "forget_memories",
                actor=self.adapter._caller(interaction),
                target=self.target,
                count=erased,
                platform="discord",
            )
        await interaction.response.edit_message(
            content=f"Done: erased {erased} of {self.whose} memories.", view=None
        )
        self.stop()

    @discord.ui.button(
        label="Cancel", style=discord.ButtonStyle.secondary, custom_id="forget:cancel"
    )
    async def cancel(self, interaction: discord.Interaction, _: discord.ui.Button) -> None:
        await interaction.response.edit_message(content="Cancelled. Nothing was erased.", view=None)
        self.stop()
