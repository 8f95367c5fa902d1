"""The turn pipeline every platform shares: accept once, answer, deliver, close.

An adapter that decides to answer a message asks `MemoryBot.accept()` for a `Ticket`.
`None` means the message was taken on before (a retry, a duplicate delivery, another
replica): nothing to do. Otherwise the ticket is the message's entry in the inbox
(engine/inbox.py) until the adapter calls `done()` after delivering. In between the
adapter saves how far it got (`note(placeholder=…, posted=…)`), and `answer()` runs the
turn once: a ticket taken over from a dead process reuses the answer it had computed, or
the answer its checkpoint already holds, and a message older than
`MEMBOT_INBOX_REANSWER_SECONDS` gets a short note instead of a late answer.

The bot counts open tickets so a shutdown can wait for them (`MemoryBot.drain`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.inbox import Inbound, with_progress
from engine.reply import Reply, ReplyStream

if TYPE_CHECKING:
    from engine.bot import MemoryBot

LATE_NOTE = (
    "Sorry, I was restarted before I could answer your message of {when}. "
    "Please send it again if you still need an answer."
)


class Ticket:
    """One accepted message on its way to an answer."""

    def __init__(self, bot: MemoryBot, inbound: Inbound, *, taken_over: bool = False) -> None:
        self._bot = bot
        self.inbound = inbound
        # True when another (dead) process accepted it: delivery may be half done.
        self.taken_over = taken_over
        self._closed = False
        # Saves in order: the reply (from the stream) and delivery progress (from the
        # adapter's writer) may be noted at once; each save holds all notes before it, so
        # the last one written must be the last one made.
        self._saving = asyncio.Lock()

    @property
    def route(self) -> dict[str, Any]:
        return self.inbound.route

    async def note(self, **route: Any) -> None:
        """Save delivery progress (placeholder ids, parts posted) so a takeover resumes
        there instead of posting twice."""
        async with self._saving:
            self.inbound = with_progress(self.inbound, **route)
            await self._bot._save_progress(self.inbound)

    async def answer(self) -> Reply:
        """The reply to the message, whole, computed once across processes."""
        return await self.stream().whole()

    def stream(self) -> ReplyStream:
        """The reply to the message as it is written (`MemoryBot.stream`), computed once
        across processes: a reply known already (taken over, or a late note) comes as one
        piece."""
        return ReplyStream(self._replying())

    async def _replying(self) -> AsyncGenerator[str | Reply, None]:
        known = await self._known_reply()
        if known is not None:
            yield known.text
            yield known
            return
        inbound = self.inbound
        stream = self._bot.stream(
            user_id=inbound.user_id,
            thread_id=inbound.thread_id,
            text=inbound.text,
            message_id=inbound.message_id,
            at=inbound.at,
        )
        async with stream:
            async for piece in stream:
                yield piece
        reply = stream.reply
        if not reply.refused:
            await self.note(reply=reply.text)
        yield reply

    async def _known_reply(self) -> Reply | None:
        """The reply computed before (by this ticket, or a dead process that held it), or
        a note that it is too late to answer."""
        bot, inbound = self._bot, self.inbound
        if inbound.reply is not None:
            return bot._stored_reply(inbound.reply)
        if not self.taken_over:
            return None
        age = (datetime.now(UTC) - inbound.at).total_seconds()
        if age > bot.settings.inbox_reanswer_seconds:
            when = inbound.at.strftime("%d %b %H:%M UTC")
            return bot._stored_reply(LATE_NOTE.format(when=when), error=True)
        saved = await bot._saved_answer(inbound.thread_id, inbound.message_id)
        if saved is None:
            return None
        reply = bot._stored_reply(saved)
        await self.note(reply=reply.text)
        return reply

    async def done(self) -> None:
        """The answer is delivered (or nobody can be told): close the entry."""
        await self._bot._close_ticket(self, delivered=True)

    async def release(self) -> None:
        """Stop working on it without closing it (shutdown, a failure before delivery):
        the entry stays open and is answered by whoever takes it over."""
        await self._bot._close_ticket(self, delivered=False)


# What an adapter does with a message a dead process had accepted: deliver (the rest of)
# its answer, then `done()`.
Resume = Callable[[Ticket], Awaitable[None]]
