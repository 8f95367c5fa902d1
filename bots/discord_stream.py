"""Streaming an answer into Discord messages as the model writes it, exactly once.

The adapter (bots/discord.py) decides *where* an answer goes: a reply in a channel, or an
`/ask`'s response and follow-ups (an `Outlet`). This module decides *how* a text that keeps
growing becomes Discord messages without breaking Discord's rules or posting anything twice:

- The text is cut where `bots.chunking.split_message` cuts it (2,000 characters, on
  paragraph/sentence boundaries, a code fence closed and reopened); message n shows part n.
  Parts before the last never change once the text has outgrown them, so a message whose
  part is complete is finished and the text continues in the next message; together the
  messages hold the whole answer, nothing twice. (Finishing can take back the few words
  after the last boundary that fits, which then open the next message: the price of
  cutting where `split_message` cuts, at a paragraph or sentence, not mid-word.)
- The first text is posted as soon as it exists (typing shows until then); after that the
  last message is edited as the text grows, no closer than EDIT_INTERVAL apart per channel,
  across every answer streaming there. Discord allows about 5 writes per 5 s in a channel;
  discord.py waits out a 429, but a bot living on 429s makes every answer in the channel
  late. Finishing a message, and the final text, need not wait the interval, only the
  channel's burst allowance (BURST per BURST_WINDOW).
- Every post and every edit carries `AllowedMentions.none()`: no text pings anyone.
- Progress is saved on the ticket when a message is posted, finished or deleted: `via`
  (how the messages were made) and `messages`, each message's id, how many characters it
  held, whether that was its final part and a digest of that text. Whoever takes the answer
  over after a crash edits those messages instead of posting new ones: a finished message
  whose digest matches its part is left alone, any other is edited to its part, missing
  parts are posted, parts no longer needed are deleted. A channel post carries a nonce
  derived from the message and the part, which Discord enforces (it returns the message
  made before), so even a crash between posting and saving posts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import discord

from bots.chunking import split_message
from bots.replies import TROUBLE
from engine.reply import Reply
from engine.turns import Ticket

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 2_000
NO_PINGS = discord.AllowedMentions.none()
# Seconds between a channel's writes while an answer grows: "about once a second", with a
# margin under Discord's 5 writes per 5 s.
EDIT_INTERVAL = 1.2
# Writes that finish a message may come sooner, but never more than BURST per BURST_WINDOW s.
BURST, BURST_WINDOW = 4, 5.0
UNKNOWN_MESSAGE = 10008  # Discord's code for a message deleted (or never there)

Via = Literal["channel", "interaction"]
# Channels a message can be posted to, replied in and edited in (a forum or category cannot).
Postable = (
    discord.TextChannel
    | discord.VoiceChannel
    | discord.StageChannel
    | discord.Thread
    | discord.DMChannel
    | discord.PartialMessageable
)


def digest(text: str) -> str:
    """A short fingerprint of a message's text: what progress remembers it showed."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def nonce(key: str, n: int) -> str:
    """The nonce of part `n` of the answer to inbox entry `key` (16 characters; Discord takes
    up to 25). The same post repeated (after a crash) returns the message made first."""
    return digest(f"{key}#{n}")


# -- where messages go ---------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A message Discord holds: its id and its text."""

    id: int
    content: str


class Outlet(Protocol):
    """Where one answer's messages go; part `n` is the answer's n-th message."""

    via: Via
    lane: int  # the channel's id: writes are paced per channel

    async def post(self, n: int, text: str) -> Sent: ...

    async def edit(self, n: int, message_id: int, text: str) -> None: ...

    async def delete(self, n: int, message_id: int) -> None: ...


@dataclass
class ChannelOutlet:
    """Part 0 as a reply to the message (`reply_to`), the rest as messages in the channel."""

    channel: Postable
    reply_to: discord.MessageReference | None
    key: str  # the inbox key: the posts' nonces derive from it
    via: Via = "channel"

    @property
    def lane(self) -> int:
        return self.channel.id

    async def post(self, n: int, text: str) -> Sent:
        options: dict[str, Any] = {"allowed_mentions": NO_PINGS, "nonce": nonce(self.key, n)}
        if n == 0 and self.reply_to is not None:
            options |= {"reference": self.reply_to, "mention_author": False}
        message = await self.channel.send(text, **options)
        return Sent(message.id, message.content)

    async def edit(self, n: int, message_id: int, text: str) -> None:
        message = self.channel.get_partial_message(message_id)
        await message.edit(content=text, allowed_mentions=NO_PINGS)

    async def delete(self, n: int, message_id: int) -> None:
        await self.channel.get_partial_message(message_id).delete()


@dataclass
class InteractionOutlet:
    """An `/ask`: part 0 is the interaction's response (the deferred "thinking…" message,
    edited), the others are follow-ups. Live through the `Interaction` itself; after a
    takeover through the follow-up webhook (the same token), the response edited by its id."""

    webhook: discord.Webhook
    lane: int
    interaction: discord.Interaction | None = None
    via: Via = "interaction"

    async def post(self, n: int, text: str) -> Sent:
        if n == 0 and self.interaction is not None:
            response = await self.interaction.edit_original_response(
                content=text, allowed_mentions=NO_PINGS
            )
            return Sent(response.id, response.content)
        message = await self.webhook.send(text, wait=True, allowed_mentions=NO_PINGS)
        return Sent(message.id, message.content)

    async def edit(self, n: int, message_id: int, text: str) -> None:
        if n == 0 and self.interaction is not None:
            await self.interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
            return
        await self.webhook.edit_message(message_id, content=text, allowed_mentions=NO_PINGS)

    async def delete(self, n: int, message_id: int) -> None:
        await self.webhook.delete_message(message_id)


# -- pacing --------------------------------------------------------------------------------


class Pacer:
    """When each channel may be written to next, across every answer streaming there: no
    closer than `interval` apart while a text grows; writes that finish a message may follow
    at once, but never more than `burst` within `window` seconds."""

    def __init__(
        self, interval: float = EDIT_INTERVAL, burst: int = BURST, window: float = BURST_WINDOW
    ) -> None:
        self.interval, self.burst, self.window = interval, burst, window
        self._writes: dict[int, deque[float]] = {}

    def due_in(self, lane: int, *, urgent: bool) -> float:
        """Seconds until `lane` may be written to (0: now)."""
        writes = self._writes.get(lane)
        if not writes:
            return 0.0
        at = writes[-1] + (0.0 if urgent else self.interval)
        if len(writes) == self.burst:
            at = max(at, writes[0] + self.window)
        return max(0.0, at - time.monotonic())

    def take(self, lane: int) -> None:
        """A write to `lane` goes now."""
        now = time.monotonic()
        if len(self._writes) > 1_000:  # channels idle for a window need no memory
            self._writes = {k: v for k, v in self._writes.items() if now - v[-1] < self.window}
        self._writes.setdefault(lane, deque(maxlen=self.burst)).append(now)


# -- one answer ----------------------------------------------------------------------------


@dataclass
class Held:
    """One message of the answer and what it is known to show. `id` None: a part an older
    version of the adapter posted without saving the id (left as it is); `digest` None: an
    unknown text (a message inherited unfinished)."""

    id: int | None
    chars: int = 0
    digest: str | None = None
    final: bool = False

    def saved(self) -> dict[str, Any]:
        return {"id": self.id, "chars": self.chars, "final": self.final, "digest": self.digest}

    @classmethod
    def restored(cls, entry: dict[str, Any]) -> Held:
        """An entry saved by `saved()`: only a finished message's text is trusted; an
        unfinished one may have been edited after it was saved."""
        final = bool(entry.get("final"))
        known = entry.get("digest") if final else None
        message_id = entry.get("id")
        return cls(
            None if message_id is None else int(message_id), entry.get("chars", 0), known, final
        )


def inherited(route: dict[str, Any], via: Via) -> list[Held]:
    """The messages an earlier attempt made for this answer, when made the way this one
    posts (an `/ask` answered in its channel after its webhook expired starts afresh).
    `posted` is the older adapter's progress: how many whole parts it posted."""
    if route.get("via", via) != via:
        return []
    if "messages" in route:
        return [Held.restored(entry) for entry in route["messages"]]
    return [Held(None, final=True) for _ in range(int(route.get("posted", 0)))]


@dataclass(frozen=True)
class Write:
    """The next change on Discord: post part `n`, edit message `n` to it, or delete it.
    `final`: the text is that message's last (its part is complete)."""

    kind: Literal["post", "edit", "delete"]
    n: int
    text: str = ""
    final: bool = True


class Written:
    """The text so far, and an event set whenever it grows."""

    def __init__(self) -> None:
        self._pieces: list[str] = []
        self.grew = asyncio.Event()

    def add(self, piece: str) -> None:
        self._pieces.append(piece)
        self.grew.set()

    @property
    def text(self) -> str:
        return "".join(self._pieces)


def parts_of(text: str) -> list[str]:
    """The messages `text` fills ([] while it is blank: nothing to show yet)."""
    return [part for part in split_message(text, MESSAGE_LIMIT) if part]


class Delivery:
    """One answer, streamed into its messages: see the module docstring."""

    def __init__(self, ticket: Ticket, outlet: Outlet, pacer: Pacer) -> None:
        self.ticket, self.outlet, self.pacer = ticket, outlet, pacer
        self.messages = inherited(ticket.route, outlet.via)

    async def run(self, typing_in: discord.abc.Messageable | None) -> None:
        """Stream the answer into messages (typing in `typing_in` until its first text),
        then make them show the reply. Discord refusing a final write raises
        `discord.HTTPException`: the caller decides whether a later attempt can do better."""
        written = Written()
        reader = asyncio.create_task(_read(self.ticket, written))
        try:
            async with contextlib.AsyncExitStack() as typing:
                if typing_in is not None and self.ticket.inbound.reply is None:
                    await show_typing(typing, typing_in)
                await self._follow(written, reader, typing)
            reply = await _outcome(reader, self.ticket)
        finally:
            if not reader.done():
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        await self._settle(reply.text)

    async def _follow(
        self, written: Written, reader: asyncio.Task[Reply], typing: contextlib.AsyncExitStack
    ) -> None:
        """While the model writes, the messages follow its text: one write per turn the
        pacer gives, always with the freshest text. A write Discord could not take now
        (429, 5xx) is tried again with the next text; one it refuses for good ends the
        following (the final writes then decide)."""
        while not reader.done():
            written.grew.clear()
            write = await self._next(written.text, done=False)
            if write is None:
                await _either(written.grew, reader)
                continue
            if not await self._turn(urgent=write.final, reader=reader):
                return  # the answer is complete: the final writes come next
            await typing.aclose()  # the first text replaces "typing…"
            write = await self._next(written.text, done=False)  # it grew while we waited
            if write is None:
                continue
            try:
                await self._apply(write)
            except discord.HTTPException as err:
                if err.status != 429 and err.status < 500:
                    logger.warning("discord: streaming stopped (HTTP %s)", err.status)
                    return
                logger.info("discord: a streaming write waits (HTTP %s)", err.status)

    async def _settle(self, text: str) -> None:
        """The messages made to show `text`, the reply, whole: each part its final one."""
        while (write := await self._next(text, done=True)) is not None:
            await self._turn(urgent=True)
            await self._apply(write)

    async def _next(self, text: str, *, done: bool) -> Write | None:
        """The first message that does not show its part yet (in order: a message is
        finished before the next is posted); with the text `done`, also the messages it
        no longer needs, last first. None: Discord shows `text` as it stands."""
        parts = parts_of(text) if not done else split_message(text, MESSAGE_LIMIT)
        await self._mark_finished(parts, done=done)
        for n, part in enumerate(parts):
            final = done or n < len(parts) - 1
            if n == len(self.messages):
                return Write("post", n, part, final)
            held = self.messages[n]
            if held.id is not None and held.digest != digest(part):
                return Write("edit", n, part, final)
        extra = len(self.messages) > len(parts)
        if done and extra and self.messages[-1].id is not None:
            return Write("delete", len(self.messages) - 1)
        return None

    async def _mark_finished(self, parts: list[str], *, done: bool) -> None:
        """Messages that already show a part now complete are finished: saved so, so a
        takeover leaves them alone."""
        finished = False
        for n, (held, part) in enumerate(zip(self.messages, parts, strict=False)):
            final = done or n < len(parts) - 1
            if final and not held.final and held.id is not None and held.digest == digest(part):
                held.final = finished = True
        if finished:
            await self._save()

    async def _apply(self, write: Write) -> None:
        """Make the change on Discord and keep track (saved when a message is posted,
        finished or deleted)."""
        if write.kind == "post":
            sent = await self.outlet.post(write.n, write.text)
            # Repeating a nonce returns the message made before: its text is what it holds.
            final = write.final and sent.content == write.text
            self.messages.append(Held(sent.id, len(sent.content), digest(sent.content), final))
            await self._save()
            return
        held = self.messages[write.n]
        assert held.id is not None  # `_next` never picks a message it cannot reach
        if write.kind == "delete":
            with contextlib.suppress(discord.NotFound):
                await self.outlet.delete(write.n, held.id)
            self.messages.pop()
            await self._save()
            return
        try:
            await self.outlet.edit(write.n, held.id, write.text)
        except discord.NotFound as err:
            if err.code != UNKNOWN_MESSAGE:
                raise
            # Someone deleted it: it stays deleted, the answer goes on in the others.
            logger.info("discord: message %s of an answer was deleted; not reposted", held.id)
        held.chars, held.digest = len(write.text), digest(write.text)
        if write.final:
            held.final = True
            await self._save()

    async def _turn(self, *, urgent: bool, reader: asyncio.Task[Reply] | None = None) -> bool:
        """Wait until the pacer lets this channel be written to, and take that turn. False
        (no turn taken) when `reader` ended first: the final writes come next."""
        lane = self.outlet.lane
        while (delay := self.pacer.due_in(lane, urgent=urgent)) > 0:
            if reader is None:
                await asyncio.sleep(delay)
                continue
            await asyncio.wait({reader}, timeout=delay)
            if reader.done():
                return False
        self.pacer.take(lane)
        return True

    async def _save(self) -> None:
        messages = [held.saved() for held in self.messages]
        await self.ticket.note(via=self.outlet.via, messages=messages)


async def _read(ticket: Ticket, written: Written) -> Reply:
    """The answer's pieces into `written` as they come; then the whole reply."""
    stream = ticket.stream()
    async with stream:
        async for piece in stream:
            written.add(piece)
    return stream.reply


async def _outcome(reader: asyncio.Task[Reply], ticket: Ticket) -> Reply:
    """The reply, or an apology when answering failed (it replaces any text shown)."""
    try:
        return await reader
    except Exception:
        logger.exception("discord: answering in %s failed", ticket.inbound.thread_id)
        return Reply(TROUBLE, "", False, error=True)


async def _either(event: asyncio.Event, task: asyncio.Task[Any]) -> None:
    """Until `event` is set or `task` is done."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def show_typing(stack: contextlib.AsyncExitStack, channel: discord.abc.Messageable) -> None:
    """Show "membot is typing…" until the stack closes; not being allowed to show it is no
    reason not to answer."""
    try:
        await stack.enter_async_context(channel.typing())
    except discord.HTTPException as err:
        logger.info("discord: could not show typing (HTTP %s)", err.status)
