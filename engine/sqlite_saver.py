"""The SQLite checkpointer of the embedded default: LangGraph's `SqliteSaver` on one thread.

`AsyncSqliteSaver` (aiosqlite) hands every statement and commit to its worker thread
separately: a turn's checkpoint read and write came to ~24 thread round trips, and the
profile (bench/engine_bench.py) showed a quarter of a turn spent waiting on those wake-ups.
Here each checkpoint operation runs whole, as one call of the sync `SqliteSaver`, on a
single dedicated thread (so SQLite sees one writer and the event loop never blocks). Same
schema and files as `AsyncSqliteSaver`: either can open the other's database.
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


class ThreadedSqliteSaver(SqliteSaver):
    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        super().__init__(conn)
        self._executor = executor

    @classmethod
    @asynccontextmanager
    async def open(cls, path: str) -> AsyncIterator[ThreadedSqliteSaver]:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoints")
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(
            executor, partial(sqlite3.connect, path, check_same_thread=False)
        )
        saver = cls(conn, executor)
        try:
            await saver._call(saver.setup)
            yield saver
        finally:
            await loop.run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

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
