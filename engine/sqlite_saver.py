"""The SQLite checkpointer of the embedded default: LangGraph's `SqliteSaver` on one thread.

`AsyncSqliteSaver` (aiosqlite) hands every statement and commit to its worker thread
separately: a turn's checkpoint read and write came to ~24 thread round trips, and the
profile (bench/engine_bench.py) showed a quarter of a turn spent waiting on those wake-ups.
Here each checkpoint operation runs whole, as one call of the sync `SqliteSaver`, on a
single dedicated thread (so SQLite sees one writer and the event loop never blocks). Same
schema and files as `AsyncSqliteSaver`: either can open the other's database.

Only a thread's latest checkpoint is ever read (the workflow's `previous`, `MemoryBot.
thread()`); nothing asks for older ones (no `get_state_history`, no time travel). Yet
LangGraph keeps one per turn: 60 turns were 60 rows, 1.45 MB, for one thread. So by default
each saved checkpoint replaces the thread's older ones: a TEMP trigger on this connection
deletes them, with their pending writes, inside the very INSERT that saves the new one. It
is one transaction by construction (a failed save deletes nothing), it runs on the saver's
thread, and it leaves the file's schema alone (other tools opening the file see plain
LangGraph tables, and `keep_latest=False` keeps every checkpoint, as LangGraph does).
It costs ~0.1 ms a save (median `put` 0.5 ms without, 0.55-0.65 ms with); deleting at
every 10th save instead was no cheaper (0.5-0.57 ms: a transaction of its own) and
kept up to 10 rows. After 1,000 turns the file is 229 KB instead of 74.6 MB
(bench/checkpoint_bench.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

# A checkpoint's rows are keyed (thread_id, checkpoint_ns, checkpoint_id) and LangGraph's ids
# are uuid6, time-ordered as text (its `get_tuple` takes the greatest id as the latest), so
# "older" is `checkpoint_id < NEW.checkpoint_id`: two range deletes on the primary keys. A
# write saved late for an older checkpoint goes at the next save. The new checkpoint's
# `parent_checkpoint_id` is left pointing at a deleted row: clearing it would rewrite the
# whole row (blob included), and only forking from an old checkpoint would follow it.
# (SQLite forbids qualified names inside a trigger; with no temp tables of these names they
# resolve to the file's.)
KEEP_LATEST_TRIGGER = """
CREATE TEMP TRIGGER IF NOT EXISTS membot_keep_latest AFTER INSERT ON main.checkpoints
BEGIN
    DELETE FROM writes
    WHERE thread_id = NEW.thread_id AND checkpoint_ns = NEW.checkpoint_ns
    AND checkpoint_id < NEW.checkpoint_id;
    DELETE FROM checkpoints
    WHERE thread_id = NEW.thread_id AND checkpoint_ns = NEW.checkpoint_ns
    AND checkpoint_id < NEW.checkpoint_id;
END
"""

# Threads whose newest checkpoint is older than a bound; the primary key serves the
# grouping, so no checkpoint is read (let alone unpickled) to find them.
IDLE_THREADS_SQL = """
SELECT thread_id FROM checkpoints GROUP BY thread_id HAVING max(checkpoint_id) < ?
"""


class ThreadedSqliteSaver(SqliteSaver):
    def __init__(
        self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, *, keep_latest: bool = True
    ) -> None:
        super().__init__(conn)
        self._executor = executor
        self._keep_latest = keep_latest

    @property
    def keep_latest(self) -> bool:
        """Whether a save deletes the thread's older checkpoints (fixed at construction:
        `setup` creates the trigger with the tables)."""
        return self._keep_latest

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: str, *, keep_latest: bool = True
    ) -> AsyncIterator[ThreadedSqliteSaver]:
        """The saver on `path`, its tables created if needed. With `keep_latest` (the
        default) each thread keeps only its latest checkpoint (see the module docstring);
        without it every checkpoint stays, as in LangGraph's own savers."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(
            executor, partial(sqlite3.connect, path, check_same_thread=False)
        )
        saver = cls(conn, executor, keep_latest=keep_latest)
        try:
            await saver._call(saver.setup)
            yield saver
        finally:
            await loop.run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)

    def setup(self) -> None:
        """LangGraph's tables, then (with `keep_latest`) this connection's trigger."""
        if self.is_setup:
            return
        super().setup()
        if self._keep_latest:
            self.conn.execute(KEEP_LATEST_TRIGGER)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    def idle_threads(self, before_id: str) -> list[str]:
        """Threads whose newest checkpoint id sorts before `before_id` (ids are uuid6: in
        time order; engine.checkpoint.idle_threads turns a time into such a bound)."""
        with self.cursor(transaction=False) as cur:
            cur.execute(IDLE_THREADS_SQL, (before_id,))
            return [str(thread_id) for (thread_id,) in cur.fetchall()]

    async def aidle_threads(self, before_id: str) -> list[str]:
        return list(await self._call(self.idle_threads, before_id))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._call(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        def page() -> list[CheckpointTuple]:
            found: Iterator[CheckpointTuple] = self.list(
                config, filter=filter, before=before, limit=limit
            )
            return list(found)

        for item in await self._call(page):
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._call(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._call(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._call(self.delete_thread, thread_id)

    async def aget_delta_channel_history(self, *args: Any, **kwargs: Any) -> Any:
        return await self._call(self.get_delta_channel_history, *args, **kwargs)
