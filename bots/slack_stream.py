"""An answer into Slack while the model writes it.

One driver, `Delivery`, and two ways of putting text in Slack:

- `StreamWriter`, Slack's text streaming through slack_sdk's `chat_stream` helper
  (chat.startStream, chat.appendStream, chat.stopStream). The text goes as Markdown
  (`markdown_text`), which Slack renders itself, and a stream starts with its first text.
  The feedback buttons go with the stop.
- `EditWriter`, where streaming is not available (chat.startStream refused, a top-level DM,
  which cannot stream, a takeover): a message (the "Thinking…" placeholder, or one posted
  with the first text) rewritten with chat.update as the text grows, in Slack's mrkdwn.

The driver keeps the pieces, escapes what goes out (`slack_format.escape`, holding back a
tail that could still become `@here`), writes at most once a second from a task of its own
(so Slack's latency never holds up the model, and text a pausing model has written still
shows), and rolls over to a new message before Slack's length limit: the messages of one
answer join to exactly what the model wrote (a code block cut in two is closed at the end
of one message and reopened in the next). When the turn ends with something other than the
pieces (a failure after some text: its notice replaces them) the messages are rewritten.

Each new message is saved to the ticket at once (`placeholder`: the message being written;
`earlier`: those finished; `offset`: where the current one starts in the answer; `spare`:
older messages a rewrite has not used yet; `obsolete`: a "Thinking…" a stream replaced),
so a takeover after a crash finishes the answer with chat.update instead of posting twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack_format import escape, held_back, to_mrkdwn

logger = logging.getLogger(__name__)

# Slack truncates long message texts; well under its 4,000-character advice.
MESSAGE_LIMIT = 3_900
# A streamed message: markdown_text takes up to 12,000 characters a call, and a message's
# Markdown at most 12,000 in all; a takeover rewrites it with chat.update (text truncated
# only at 40,000). So a margin below 12,000, escaping and fences counted.
STREAM_LIMIT = 10_000
# At most one write a second per answer (start and stop aside), with a margin: at exactly
# 1.0 s a 10.4 s answer took start + 11 appends + stop (bench/stream_bench.py).
FLUSH_SECONDS = 1.2
# An edit rewrites the whole message, and a placeholder already says we are at it: the
# first one waits until the model has written for a while.
FIRST_EDIT_SECONDS = 2.0
EMPTY_ANSWER = "_(no answer)_"
# chat.startStream refusals that say the method is unavailable to this app everywhere;
# any other refusal is taken to be about the one conversation.
APP_WIDE_REFUSALS = frozenset(
    {"unknown_method", "method_not_supported", "missing_scope", "not_allowed_token_type"}
)
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", " ")
_FENCE = re.compile(r"^[ \t]*```(\S*)", re.M)

Note = Callable[..., Awaitable[None]]
OnMessage = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """Where an answer goes, and who asked (a stream names its recipient)."""

    channel: str
    thread_ts: str | None
    team: str
    user: str


class StreamSupport:
    """Whether Slack lets this app stream, learnt from chat.startStream's answers: unknown
    until a stream first starts or is refused. A refusal of the method itself turns
    streaming off for the process, any other refusal for that conversation; a Slack outage
    (429, 5xx, no connection) says nothing either way."""

    def __init__(self) -> None:
        self.known: bool | None = None
        self._refused_in: set[str] = set()

    def allows(self, channel: str) -> bool:
        return self.known is not False and channel not in self._refused_in

    def started(self) -> None:
        self.known = True

    def refused(self, channel: str, error: BaseException) -> None:
        if not isinstance(error, SlackApiError):
            return
        status = error.response.status_code
        if status == 429 or status >= 500:
            return
        if error.response.get("error") in APP_WIDE_REFUSALS:
            self.known = False
        else:
            self._refused_in.add(channel)


class Diverged(Exception):
    """What a stream must show no longer starts with what it has shown (never expected:
    the driver only grows a part); the part is finished with chat.update instead."""


class StreamWriter:
    """A streamed message per part, through slack_sdk's `AsyncChatStream`.

    Its buffer is one character: the driver decides when text goes out (by time, which a
    size-only buffer cannot), so each `append` is one chat.appendStream (the first one,
    chat.startStream). A stream cannot take text back: a part only ever grows."""

    limit = STREAM_LIMIT

    def __init__(self, client: AsyncWebClient, target: Target, on_message: OnMessage) -> None:
        self._client, self._target, self._on_message = client, target, on_message
        self._stream: AsyncChatStream | None = None
        self._shown = ""
        self.current: str | None = None
        self.started = False  # a stream of this answer began

    @staticmethod
    def render(markdown: str) -> str:
        return escape(markdown)

    @property
    def spare(self) -> list[str]:
        return []

    async def show(self, text: str) -> None:
        delta = self._delta(text)
        if not delta:
            return
        stream = await self._open()
        try:
            await stream.append(markdown_text=delta)
        finally:
            await self._opened(stream)
        self._shown = text

    async def close(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        delta = self._delta(text)
        stream = await self._open()
        try:
            await stream.stop(markdown_text=delta or None, blocks=blocks)
        finally:
            await self._opened(stream)
        ts = str(stream.ts)
        self._stream, self._shown, self.current = None, "", None
        return ts

    async def abandon(self) -> None:
        """Stop the open stream, if any, before its message is rewritten: a stream left
        open shows as still being written until Slack ends it."""
        stream, self._stream = self._stream, None
        if stream is not None and stream.ts:
            with contextlib.suppress(Exception):
                await stream.stop()

    async def _open(self) -> AsyncChatStream:
        if self._stream is None:
            target = self._target
            self._stream = await self._client.chat_stream(
                channel=target.channel,
                thread_ts=target.thread_ts or "",
                recipient_team_id=target.team,
                recipient_user_id=target.user,
                buffer_size=1,
            )
        return self._stream

    async def _opened(self, stream: AsyncChatStream) -> None:
        """Report the stream's message as soon as Slack has made it."""
        if self.current is None and stream.ts:
            self.current, self.started = str(stream.ts), True
            await self._on_message(self.current)

    def _delta(self, text: str) -> str:
        if not text.startswith(self._shown):
            raise Diverged("a streamed part must only grow")
        return text[len(self._shown) :]


class EditWriter:
    """A message per part, rewritten with chat.update as the part grows (mrkdwn text).

    `seeds` are messages already in Slack for this answer (a placeholder, or what a dead
    process or a broken stream left), used in order before new ones are posted; `discard`
    deletes those a shorter answer did not need. No blocks: the text is the whole message,
    and Slack's feedback buttons come with streamed answers only."""

    limit = MESSAGE_LIMIT

    def __init__(
        self,
        client: AsyncWebClient,
        target: Target,
        on_message: OnMessage,
        seeds: list[str] | None = None,
    ) -> None:
        self._client, self._target, self._on_message = client, target, on_message
        self._seeds = list(seeds or [])
        self.current: str | None = self._seeds.pop(0) if self._seeds else None
        self._shown: str | None = None  # unknown for a seed: it is always rewritten

    @staticmethod
    def render(markdown: str) -> str:
        return to_mrkdwn(markdown)

    @property
    def spare(self) -> list[str]:
        return list(self._seeds)

    async def show(self, text: str) -> None:
        if not text or text == self._shown:
            return
        channel = self._target.channel
        if self.current is None:
            posted = await self._client.chat_postMessage(
                channel=channel, thread_ts=self._target.thread_ts, text=text
            )
            self.current, self._shown = str(posted["ts"]), text
            await self._on_message(self.current)
            return
        await self._client.chat_update(channel=channel, ts=self.current, text=text)
        self._shown = text

    async def close(self, text: str, blocks: list[dict[str, Any]] | None = None) -> str:
        await self.show(text)
        ts = str(self.current)
        self.current = self._seeds.pop(0) if self._seeds else None
        self._shown = None
        return ts

    async def discard(self) -> None:
        """Delete the seeds left over (an earlier, longer attempt at this answer)."""
        leftover = [ts for ts in (self.current, *self._seeds) if ts]
        self.current, self._seeds = None, []
        for ts in leftover:
            with contextlib.suppress(SlackApiError):
                await self._client.chat_delete(channel=self._target.channel, ts=ts)


class Delivery:
    """One answer on its way into Slack; see the module docstring.

        async with Delivery(client=..., target=..., note=ticket.note, stream=True) as delivery:
            async for piece in stream:
                delivery.add(piece)
            await delivery.finish(stream.reply.text, blocks=...)

    `finish` raises what Slack answered if it could not be written (`SlackApiError`,
    or a connection error); by then everything that could be saved is in the ticket."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        target: Target,
        note: Note,
        stream: bool = False,
        seeds: list[str] | None = None,
        support: StreamSupport | None = None,
        thinking: str | None = None,
        earlier: list[str] | None = None,
        base: int = 0,
    ) -> None:
        """`stream`: through Slack's streaming (else edits of `seeds`, then new messages);
        `thinking`: a "Thinking…" placeholder a stream replaces (or the fallback edits);
        `earlier` and `base`: parts of the answer already delivered (a takeover)."""
        self._client, self._target, self._note = client, target, note
        self._support = support or StreamSupport()
        self.writer: StreamWriter | EditWriter = (
            StreamWriter(client, target, self._on_message)
            if stream
            else EditWriter(client, target, self._on_message, seeds)
        )
        self._thinking = thinking if stream else None
        self.earlier = list(earlier or [])  # the messages finished, in order
        self.base = base  # where `raw` starts in the answer (a takeover resumes mid-answer)
        self.raw = ""  # the text so far (from `base`)
        self._start = 0  # where the current part starts in `raw`
        self._shown_end = 0  # how much of `raw` the current message shows
        self._reopen: str | None = None  # language of a code block the part continues
        self._first_at: float | None = None
        self._last_write = float("-inf")
        self._more, self._end = asyncio.Event(), asyncio.Event()
        self._pump: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    async def __aenter__(self) -> Delivery:
        self._pump = asyncio.create_task(self._pumping(), name="slack-delivery")
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def add(self, piece: str) -> None:
        """A piece of the answer, as the model wrote it."""
        if self._first_at is None:
            self._first_at = time.monotonic()
        self.raw += piece
        self._more.set()

    async def finish(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        """The answer is `text` (from `base`): write the rest, close the last message (with
        `blocks`, if streamed), and drop what an earlier attempt left over."""
        self._end.set()
        self._more.set()
        if self._pump is not None:
            await self._pump
        if self.failure is not None:
            raise self.failure
        text = text or EMPTY_ANSWER
        if text != self.raw:
            await self._rewrite(text)
        await self._write(final=True, blocks=blocks)
        if isinstance(self.writer, EditWriter):
            await self.writer.discard()

    # -- writing -----------------------------------------------------------------------

    async def _pumping(self) -> None:
        """Write what the model has written, at most once a second, until `finish`."""
        try:
            while True:
                await self._more.wait()
                if self._end.is_set():
                    return
                wait = self._due() - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._end.wait(), wait)
                    if self._end.is_set():
                        return
                self._more.clear()
                await self._write(final=False)
        except Exception as error:  # Slack refused, and no other way was left: see finish
            self.failure = error

    def _due(self) -> float:
        """When the next write may go: a stream shows the first text at once, an edit
        waits for some generation first; then one a second."""
        due = self._last_write + FLUSH_SECONDS
        if isinstance(self.writer, EditWriter) and self._first_at is not None:
            due = max(due, self._first_at + FIRST_EDIT_SECONDS)
        return due

    async def _write(self, *, final: bool, blocks: list[dict[str, Any]] | None = None) -> None:
        try:
            await self._flush(final=final, blocks=blocks)
        except Exception as error:
            if not isinstance(self.writer, StreamWriter):
                raise
            await self._stop_streaming(error)
            if final:
                await self._flush(final=True, blocks=blocks)
            else:
                self._more.set()  # the edits take over, at their own pace

    async def _flush(self, *, final: bool, blocks: list[dict[str, Any]] | None) -> None:
        end = len(self.raw) if final else len(self.raw) - held_back(self.raw)
        while self._measure(self.raw[self._start : end]) > self.writer.limit:
            await self._roll_over(self._start + self._cut(self.raw[self._start : end]))
        if not final and end == self._shown_end:
            return  # nothing new to show (or only a tail held back)
        text = self._render(self.raw[self._start : end], closing=False)
        if final:
            await self.writer.close(text, blocks)
        else:
            await self.writer.show(text)
        self._shown_end = end
        self._last_write = time.monotonic()

    async def _roll_over(self, cut: int) -> None:
        """End the current message at `cut` and start the next part there."""
        head = self.raw[self._start : cut]
        ts = await self.writer.close(self._render(head, closing=True))
        self._reopen = _open_fence(self._prefix() + head)
        self.earlier.append(ts)
        self._start = self._shown_end = cut
        await self._save()

    async def _stop_streaming(self, error: BaseException) -> None:
        """chat.startStream was refused, or a stream broke: the answer goes on in edits,
        from the placeholder if one shows, else in the stream's own message."""
        writer = self.writer
        assert isinstance(writer, StreamWriter)
        if writer.started:
            logger.warning("slack: a stream broke (%s); finishing with edits", _cause(error))
            seeds = [writer.current] if writer.current else []
            await writer.abandon()
        else:
            logger.info("slack: streaming unavailable (%s); editing instead", _cause(error))
            self._support.refused(self._target.channel, error)
            seeds = [self._thinking] if self._thinking else []
        self._thinking = None
        self.writer = EditWriter(self._client, self._target, self._on_message, seeds)

    async def _rewrite(self, text: str) -> None:
        """The answer is not the pieces shown (a notice replaced them): every message of it
        is rewritten, in order, and those left over are deleted."""
        writer = self.writer
        seeds = [*self.earlier, *(ts for ts in (writer.current, self._thinking) if ts)]
        seeds += writer.spare
        if isinstance(writer, StreamWriter):
            await writer.abandon()
        self.writer = EditWriter(self._client, self._target, self._on_message, seeds)
        self._thinking, self.earlier, self.base = None, [], 0
        self.raw, self._start, self._shown_end, self._reopen = text, 0, 0, None
        await self._save()

    async def _on_message(self, ts: str) -> None:
        """A new message of this answer exists: saved at once, and a placeholder it
        replaces is deleted."""
        replaced = self._thinking  # only a stream replaces one
        if isinstance(self.writer, StreamWriter):
            self._support.started()
        await self._save(obsolete=replaced)
        if replaced:
            self._thinking = None
            with contextlib.suppress(SlackApiError):
                await self._client.chat_delete(channel=self._target.channel, ts=replaced)

    async def _save(self, **extra: Any) -> None:
        await self._note(
            placeholder=self.writer.current,
            earlier=list(self.earlier),
            offset=self.base + self._start,
            spare=self.writer.spare,
            **extra,
        )

    # -- text --------------------------------------------------------------------------

    def _prefix(self) -> str:
        return f"```{self._reopen}\n" if self._reopen is not None else ""

    def _render(self, part: str, *, closing: bool) -> str:
        """`part` as the writer sends it: a code block it continues reopened, and (when
        the message ends there) one it leaves open closed."""
        text = self._prefix() + part
        if closing and _open_fence(text) is not None:
            text += "\n```"
        return self.writer.render(text)

    def _measure(self, part: str) -> int:
        return len(self._render(part, closing=True))

    def _cut(self, part: str) -> int:
        """Where in `part` (too long for one message) the message ends. Not before what
        a stream has shown of it: a stream cannot take text back."""
        shown = self._shown_end - self._start if isinstance(self.writer, StreamWriter) else 0
        return cut_point(part, self.writer.limit, self._measure, floor=shown, prefix=self._prefix())


def cut_point(
    text: str,
    limit: int,
    measure: Callable[[str], int],
    *,
    floor: int = 0,
    prefix: str = "",
) -> int:
    """Where a message that cannot hold all of `text` ends: within the longest prefix
    that `measure`s at most `limit`, after its last paragraph, line, sentence or word
    break (past a third of it, and past `floor`), the break kept, so the parts join to
    `text`; before a code block that would be cut, if it starts late enough."""
    fits = _longest_fitting(text, limit, measure)
    lowest = max(floor, fits // 3)
    cut = fits
    for separator in _BREAKS:
        at = text.rfind(separator, lowest, fits)
        if at >= 0:
            cut = at + len(separator)
            break
    fence = _open_fence_start(prefix, text[:cut])
    if fence is not None and fence > lowest:
        cut = fence
    return max(cut, floor, 1)


def _longest_fitting(text: str, limit: int, measure: Callable[[str], int]) -> int:
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return low


def _open_fence(text: str) -> str | None:
    """The language of a code block left open at the end of `text`, else None."""
    fences = _FENCE.findall(text)
    return fences[-1][:20] if len(fences) % 2 else None


def _open_fence_start(prefix: str, head: str) -> int | None:
    """Where in `head` the code block left open at its end begins, if it begins there."""
    fences = list(_FENCE.finditer(prefix + head))
    if len(fences) % 2 == 0:
        return None
    start = fences[-1].start() - len(prefix)
    return start if start >= 0 else None


def _cause(error: BaseException) -> str:
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or error.response.status_code)
    return type(error).__name__
