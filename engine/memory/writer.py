"""Background, debounced, per-thread after-turn work (memory extraction, compaction).

The reply must never wait for memory writing, and a burst of messages ("hi" / "I moved" /
"to Lisbon") should cost one extraction over all of them, not three. So each thread has a
pending batch and a timer: every new turn adds to the batch and restarts the timer; when
the thread has been quiet for `debounce` seconds the batch is handed to `work` (at most one
run per thread at a time; turns arriving during a run form the next batch).

`flush()` runs what is pending now instead of waiting (shutdown, `/memories`, `/forget`,
tests). A turn never waits for it: what was said a second ago in another thread is
recalled from its episode (engine/memory/manager.py), not from a flushed fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

logger = logging.getLogger(__name__)


@dataclass
class Batch:
    """What one thread said since its last run."""

    thread_id: str
    user_ids: list[str] = field(default_factory=list)
    messages: dict[str, list[BaseMessage]] = field(default_factory=dict)  # by user

    def add(self, user_id: str, messages: Sequence[BaseMessage]) -> None:
        if user_id not in self.messages:
            self.user_ids.append(user_id)
        self.messages.setdefault(user_id, []).extend(messages)


Work = Callable[[Batch], Awaitable[None]]


@dataclass
class _Thread:
    pending: Batch | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one run at a time per thread
    running_users: frozenset[str] = frozenset()
    users: set[str] = field(default_factory=set)  # everyone who had work here
    runner: asyncio.Task[None] | None = None

    def involves(self, user_id: str | None) -> bool:
        if user_id is None:
            return self.pending is not None or bool(self.running_users)
        in_pending = self.pending is not None and user_id in self.pending.messages
        return in_pending or user_id in self.running_users


class DebouncedWriter:
    def __init__(self, work: Work, *, debounce: float) -> None:
        self._work = work
        self._debounce = debounce
        self._threads: dict[str, _Thread] = {}
        # user -> threads they have work in: a turn's flush looks at its user's threads
        # only, not at every conversation with recent work (that scan grew with load).
        self._by_user: dict[str, set[str]] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, thread_id: str, user_id: str, messages: Sequence[BaseMessage]) -> None:
        """Queue messages of a finished turn; returns at once."""
        if self._closed:
            raise RuntimeError("the writer is closed")
        state = self._threads.setdefault(thread_id, _Thread())
        state.pending = state.pending or Batch(thread_id)
        state.pending.add(user_id, messages)
        state.users.add(user_id)
        self._by_user.setdefault(user_id, set()).add(thread_id)
        state.wake.set()  # restarts the quiet-period timer
        if state.runner is None or state.runner.done():
            state.runner = asyncio.create_task(
                self._run(thread_id, state), name=f"after-turn:{thread_id}"
            )

    def discard(self, user_id: str) -> int:
        """Drop `user_id`'s queued (not yet running) messages everywhere (`/forget`);
        returns how many threads had some."""
        dropped = 0
        for thread_id in list(self._by_user.get(user_id, ())):
            state = self._threads.get(thread_id)
            batch = state.pending if state is not None else None
            if batch is None or user_id not in batch.messages:
                continue
            del batch.messages[user_id]
            batch.user_ids.remove(user_id)
            if not batch.user_ids:
                assert state is not None
                state.pending = None
            dropped += 1
        return dropped

    def pending(self, user_id: str | None = None) -> list[str]:
        """Threads with queued or running work (for `user_id`, or anyone)."""
        return [t for t, state in self._threads.items() if state.involves(user_id)]

    async def flush(self, user_id: str | None = None, *, except_thread: str | None = None) -> None:
        """Run now whatever is queued (for one user's threads, or all) and wait until it and
        any run already in progress for them are done."""
        candidates = list(self._threads) if user_id is None else self._by_user.get(user_id, ())
        for thread_id in list(candidates):
            state = self._threads.get(thread_id)
            if state is not None and thread_id != except_thread and state.involves(user_id):
                await self._run_now(state)

    def take_pending(self) -> list[Batch]:
        """Remove and return every queued batch that is not running yet (shutdown: they
        go to the journal instead of being learnt now)."""
        taken = []
        for state in self._threads.values():
            if state.pending is not None:
                taken.append(state.pending)
                state.pending = None
        return taken

    async def aclose(self) -> None:
        """Flush everything and stop; later submits raise."""
        self._closed = True
        await self.flush()
        for state in self._threads.values():
            if state.runner is not None and not state.runner.done():
                state.runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.runner
        self._threads.clear()
        self._by_user.clear()

    async def _run(self, thread_id: str, state: _Thread) -> None:
        while state.pending is not None:
            while True:  # wait for a quiet period
                state.wake.clear()
                try:
                    await asyncio.wait_for(state.wake.wait(), self._debounce)
                except TimeoutError:
                    break
            await self._run_now(state)
        if self._threads.get(thread_id) is state and state.pending is None:
            del self._threads[thread_id]
            for user_id in state.users:
                threads = self._by_user.get(user_id)
                if threads is not None:
                    threads.discard(thread_id)
                    if not threads:
                        del self._by_user[user_id]

    async def _run_now(self, state: _Thread) -> None:
        async with state.lock:
            batch, state.pending = state.pending, None
            if batch is None:
                return
            state.running_users = frozenset(batch.user_ids)
            try:
                await self._work(batch)
            except Exception:
                logger.exception("after-turn work failed for a thread; its batch is dropped")
            finally:
                state.running_users = frozenset()
