"""`/memories` as a paginated, ephemeral view, and `/export` (see bots/discord.py).

The list shows up to `PAGE` of the member's facts, newest first, numbered and dated, with
Previous/Next, a select menu to pick one, and Delete / Edit for the one picked (Edit opens
a modal prefilled with its text). Only the member who ran `/memories` may use it.

Every interaction is acknowledged before the engine is called (Discord drops one not
acknowledged within 3 seconds, and a memory lookup waits for learning in progress): a
press or a modal's submission is deferred as an update of the message, then the message
is edited; Edit is answered with the modal itself, which acknowledges it.

Discord's limits are kept: message content 2,000, a select's option label and description
100 and 25 options, custom_id 100, a modal's title and label 45 and its text input 4,000.
The view expires after `TIMEOUT`; the message then says so and loses its components (a
component interaction's token is good for 15 minutes, so the last one can still edit it).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bots.discord_stream import NO_PINGS

if TYPE_CHECKING:
    from langgraph.store.base import Item

    from engine.bot import MemoryBot

logger = logging.getLogger(__name__)

PAGE = 10  # memories on a page (a select menu holds up to 25 options)
TIMEOUT = 600.0  # seconds a list stays usable; follow-up tokens last 15 minutes
CONTENT_LIMIT = 2000
OPTION_LIMIT = 100  # a select option's label, value and description
TEXT_INPUT_LIMIT = 4000
LINE_LIMIT = 180  # a memory's text on a page: 10 lines and the frame stay within 2,000
EXPORT_NAME = "membot-export.json"
NOTHING = "I don't remember anything about you yet."
EXPIRED = "(These buttons have expired: run /memories again to change anything.)"
NOT_YOURS = "This list isn't yours: run /memories to see your own."


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: a newline would break the numbered list
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _date(item: Item) -> str:
    """When the fact was last changed, as a day (the value's ISO `updated_at`)."""
    raw = str(item.value.get("updated_at") or "")
    try:
        return datetime.fromisoformat(raw).date().isoformat()
    except ValueError:
        return item.updated_at.date().isoformat()


def _text(item: Item) -> str:
    return str(item.value.get("text", ""))


class MemoryList(discord.ui.View):
    """One member's memories, a page at a time. `user_key` is whose (the engine's id),
    `owner` the Discord user who may use it."""

    def __init__(
        self, bot: MemoryBot, *, owner: int, user_key: str, timeout: float = TIMEOUT
    ) -> None:
        super().__init__(timeout=timeout)
        self.bot, self.owner, self.user_key = bot, owner, user_key
        self.offset = 0
        self.items: list[Item] = []
        self.more = False  # a further page exists
        self.picked: str | None = None  # the key of the memory picked in the select
        self.notice = ""  # what the last action did, shown above the list
        # How to edit the message once the view expires: the latest interaction's token
        # (set as the message is sent, then by each interaction).
        self.edit_message: Callable[..., Awaitable[Any]] | None = None

    # -- state -------------------------------------------------------------------------

    async def load(self) -> None:
        """Fetch the page at `offset` (stepping back when it emptied, after a deletion)."""
        while True:
            page = await self.bot.memory_page(self.user_key, offset=self.offset, limit=PAGE + 1)
            if page or self.offset == 0:
                break
            self.offset = max(0, self.offset - PAGE)
        self.items, self.more = page[:PAGE], len(page) > PAGE
        if self.picked not in {i.key for i in self.items}:
            self.picked = None
        self._render()

    def content(self) -> str:
        if not self.items:
            return "\n\n".join(filter(None, [self.notice, NOTHING]))
        lines = [
            f"{self.offset + n}. {_clip(_text(item), LINE_LIMIT)} ({_date(item)})"
            for n, item in enumerate(self.items, 1)
        ]
        first, last = self.offset + 1, self.offset + len(self.items)
        footer = f"Memories {first}–{last}. Pick one below to edit or delete it."
        parts = [self.notice, "What I remember about you:\n" + "\n".join(lines), footer]
        return "\n\n".join(p for p in parts if p)[:CONTENT_LIMIT]

    def _render(self) -> None:
        """Rebuild the components for the current page."""
        self.clear_items()
        if not self.items:
            return
        options = [
            discord.SelectOption(
                label=_clip(f"{self.offset + n}. {_text(item)}", OPTION_LIMIT),
                value=str(n - 1),  # the position on this page (keys may be long)
                description=_clip(f"{item.value.get('kind') or 'fact'}, {_date(item)}", 100),
                default=item.key == self.picked,
            )
            for n, item in enumerate(self.items, 1)
        ]
        pick = discord.ui.Select(
            custom_id="memories:pick", placeholder="Pick a memory", options=options, row=0
        )
        pick.callback = self.on_pick  # type: ignore[method-assign]
        self.add_item(pick)
        buttons = [
            ("Previous", "memories:prev", discord.ButtonStyle.secondary, self.offset == 0),
            ("Next", "memories:next", discord.ButtonStyle.secondary, not self.more),
            ("Edit", "memories:edit", discord.ButtonStyle.primary, self.picked is None),
            ("Delete", "memories:delete", discord.ButtonStyle.danger, self.picked is None),
        ]
        handlers = [self.on_previous, self.on_next, self.on_edit, self.on_delete]
        for (label, custom_id, style, disabled), handler in zip(buttons, handlers, strict=True):
            button: discord.ui.Button[MemoryList] = discord.ui.Button(
                label=label, custom_id=custom_id, style=style, disabled=disabled, row=1
            )
            button.callback = handler  # type: ignore[method-assign]
            self.add_item(button)

    def _picked_item(self) -> Item | None:
        return next((i for i in self.items if i.key == self.picked), None)

    # -- interactions --------------------------------------------------------------------

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id != self.owner:
            await interaction.response.send_message(NOT_YOURS, ephemeral=True)
            return False
        return True

    async def _show(self, interaction: discord.Interaction) -> None:
        """Edit the list's message (the interaction is acknowledged as an update)."""
        self.edit_message = interaction.edit_original_response
        view = self if self.items else None
        if view is None:
            self.stop()
        await interaction.edit_original_response(
            content=self.content(), view=view, allowed_mentions=NO_PINGS
        )

    async def on_previous(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        self.offset, self.notice = max(0, self.offset - PAGE), ""
        await self.load()
        await self._show(interaction)

    async def on_next(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        self.offset, self.notice = self.offset + PAGE, ""
        await self.load()
        await self._show(interaction)

    async def on_pick(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        values = (interaction.data or {}).get("values") or []
        position = int(values[0]) if values and str(values[0]).isdigit() else -1
        if 0 <= position < len(self.items):
            self.picked = self.items[position].key
        self.notice = ""
        self._render()
        await self._show(interaction)

    async def on_delete(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        item = self._picked_item()
        if item is None:
            self.notice = "Pick a memory first."
        elif await self.bot.forget_memory(self.user_key, item.key):
            self.notice = f"Deleted: {_clip(_text(item), LINE_LIMIT)}"
        else:
            self.notice = "That memory was already gone."
        self.picked = None
        await self.load()
        await self._show(interaction)

    async def on_edit(self, interaction: discord.Interaction) -> None:
        item = self._picked_item()
        if item is None or len(_text(item)) > TEXT_INPUT_LIMIT:
            await interaction.response.defer()
            too_long = "That memory is too long to edit here; delete it and tell me again."
            self.notice = too_long if item is not None else "Pick a memory first."
            await self._show(interaction)
            return
        await interaction.response.send_modal(EditMemory(self, item))

    async def on_timeout(self) -> None:
        if self.edit_message is None:
            return
        try:
            await self.edit_message(
                content=f"{self.content()[: CONTENT_LIMIT - len(EXPIRED) - 2]}\n\n{EXPIRED}",
                view=None,
                allowed_mentions=NO_PINGS,
            )
        except discord.HTTPException as err:  # the message or its token is gone
            logger.info("discord: could not mark a memory list expired (HTTP %s)", err.status)


class EditMemory(discord.ui.Modal):
    """The picked memory's text, to change; on submit the list is edited to show it."""

    def __init__(self, listing: MemoryList, item: Item) -> None:
        super().__init__(title="Edit a memory", timeout=listing.timeout)
        self.listing, self.key = listing, item.key
        self.text: discord.ui.TextInput[EditMemory] = discord.ui.TextInput(
            custom_id="memories:text",
            style=discord.TextStyle.paragraph,
            default=_text(item),
            max_length=TEXT_INPUT_LIMIT,
            required=True,
        )
        self.add_item(discord.ui.Label(text="What I should remember", component=self.text))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return await self.listing.interaction_check(interaction)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer()  # a submission from a message: an update of it
        listing = self.listing
        edited = await listing.bot.edit_memory(listing.user_key, self.key, self.text.value)
        if edited is None:
            listing.notice = "Nothing changed: that memory is gone, or the text was empty."
        else:
            listing.notice = f"Changed to: {_clip(_text(edited), LINE_LIMIT)}"
        await listing.load()
        await listing._show(interaction)


async def send_memories(bot: MemoryBot, interaction: discord.Interaction, user_key: str) -> None:
    """`/memories`, after it was deferred (ephemeral): the first page as a follow-up."""
    listing = MemoryList(bot, owner=interaction.user.id, user_key=user_key, timeout=TIMEOUT)
    await listing.load()
    if not listing.items:
        await interaction.followup.send(NOTHING, ephemeral=True, allowed_mentions=NO_PINGS)
        return
    message = await interaction.followup.send(
        listing.content(), view=listing, ephemeral=True, allowed_mentions=NO_PINGS, wait=True
    )
    listing.edit_message = message.edit


async def send_export(bot: MemoryBot, interaction: discord.Interaction, user_key: str) -> None:
    """`/export`, after it was deferred (ephemeral): the member's data as a JSON file."""
    document = await bot.export_memories(user_key)
    data = json.dumps(document, ensure_ascii=False, indent=2).encode()
    if len(data) > interaction.filesize_limit:
        await interaction.followup.send(
            "Your export is larger than Discord lets me attach here.", ephemeral=True
        )
        return
    await interaction.followup.send(
        "Everything I hold about you, as JSON:",
        file=discord.File(io.BytesIO(data), filename=EXPORT_NAME),
        ephemeral=True,
        allowed_mentions=NO_PINGS,
    )
