"""What a turn gives back: a `Reply`, or a `ReplyStream` of its text as it is written."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    offline: bool
    error: bool = False
    refused: bool = False  # turned away unread (empty, too long); `error` is set too


class ReplyStream:
    """A reply as the model writes it: `async for piece in stream` gives its text piece by
    piece; once the loop ends, `reply` holds the whole `Reply`. What to show in the end is
    `reply.text`: the pieces joined, byte for byte, when the answer streamed; a notice
    (a refusal, an apology) when it did not, or when the turn failed after some pieces
    (then the notice replaces them). Leaving the loop early, or the `async with` block,
    closes the stream: the turn is cancelled and its thread is free again.

        async with bot.stream(user_id=..., thread_id=..., text=...) as replying:
            async for piece in replying:
                show(piece)
        send(replying.reply)
    """

    def __init__(self, events: AsyncGenerator[str | Reply, None]) -> None:
        self._events = events
        self._reply: Reply | None = None

    @property
    def reply(self) -> Reply:
        if self._reply is None:
            raise RuntimeError("the reply is complete only once the stream has ended")
        return self._reply

    async def whole(self) -> Reply:
        """Wait for the whole reply, ignoring the pieces (a caller that cannot stream)."""
        async with self:
            async for _ in self:
                pass
        return self.reply

    def __aiter__(self) -> ReplyStream:
        return self

    async def __anext__(self) -> str:
        if self._reply is not None:
            raise StopAsyncIteration
        event = await self._events.__anext__()
        if isinstance(event, Reply):
            self._reply = event
            await self._events.aclose()
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        await self._events.aclose()

    async def __aenter__(self) -> ReplyStream:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()
