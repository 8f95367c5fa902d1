"""Scheduled maintenance with APScheduler's `AsyncIOScheduler`, started by `membot run`.

Jobs (each switchable; schedule "off", "every 30m" / "every 6h" / "every 1d", or a
crontab line such as "0 3 * * *", in UTC):
- `ttl_sweep`: delete expired memories (only when `memory_ttl_days` is set);
- `consolidate`: merge near-duplicate facts of every user (`engine.memory.consolidate`),
  then delete episodes older than `episode_retention_days`;
- `prune_checkpoints`: delete conversations idle longer than `checkpoint_retention_days`
  (off unless that is set).

Several replicas may run the scheduler: every run first takes the job's lock from
`engine.locks` (a Postgres advisory lock in server mode, a file lock in the data directory
otherwise) without waiting, and skips the run if another process holds it. So a job never
runs twice at the same time; `MEMBOT_SCHEDULER_ENABLED=false` also turns it off per process.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from langgraph.checkpoint.base import BaseCheckpointSaver

from engine.checkpoint import idle_threads
from engine.locks import Locks
from engine.memory.consolidate import consolidate, prune_episodes

logger = logging.getLogger(__name__)

_EVERY = re.compile(r"^every\s+(\d+(?:\.\d+)?)\s*([smhd])$", re.I)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_schedule(spec: str) -> BaseTrigger | None:
    """A trigger for "off", "every <N><s|m|h|d>" or a five-field crontab line (UTC)."""
    spec = spec.strip()
    if spec.lower() in ("off", "", "none", "false"):
        return None
    if m := _EVERY.match(spec):
        return IntervalTrigger(**{_UNITS[m[2].lower()]: float(m[1])}, timezone=UTC)
    try:
        return CronTrigger.from_crontab(spec, timezone=UTC)
    except ValueError as err:
        raise ValueError(
            f"bad job schedule {spec!r}: use 'off', 'every 30m' or a crontab line ({err})"
        ) from None


async def prune_checkpoints(
    checkpointer: BaseCheckpointSaver,
    older_than: timedelta,
    *,
    lock: Callable[[str], AbstractAsyncContextManager[None]] | None = None,
) -> list[str]:
    """Delete every thread whose newest checkpoint is older than `older_than`.

    Finding them is one query on the checkpoint ids for SQLite and Postgres
    (`engine.checkpoint.idle_threads`): no checkpoint is loaded, where walking `alist`
    unpickled every one of them. Deleting is the saver's own `adelete_thread`, a thread at
    a time. With `lock` (the bot's turn lock) each thread is checked again under it first,
    so a conversation that resumes while the job runs is not deleted with its new turn.
    """
    cutoff = datetime.now(UTC) - older_than
    deleted = []
    for thread_id in await idle_threads(checkpointer, cutoff):
        if lock is None:
            await checkpointer.adelete_thread(thread_id)
            deleted.append(thread_id)
            continue
        async with lock(thread_id):
            saved = await checkpointer.aget_tuple({"configurable": {"thread_id": thread_id}})
            if saved is not None and datetime.fromisoformat(saved.checkpoint["ts"]) >= cutoff:
                continue  # spoken to since the query
            await checkpointer.adelete_thread(thread_id)
            deleted.append(thread_id)
    return deleted


class MemoryScheduler:
    """Owns the APScheduler instance and the job bodies; `run_once` runs one job now."""

    def __init__(self, bot: Any, locks: Locks) -> None:  # bot: engine.bot.MemoryBot
        self.bot = bot
        self.locks = locks
        self._scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._bodies: dict[str, Callable[[], Awaitable[Any]]] = {
            "ttl_sweep": self._sweep,
            "consolidate": self._consolidate,
            "prune_checkpoints": self._prune,
        }

    def jobs(self) -> dict[str, BaseTrigger]:
        """The enabled jobs with their triggers."""
        settings = self.bot.settings
        wanted = {  # name: (schedule, whether the job has anything to do)
            "ttl_sweep": (settings.job_ttl_sweep, settings.memory_ttl_days is not None),
            "consolidate": (settings.job_consolidate, True),
            "prune_checkpoints": (
                settings.job_prune_checkpoints,
                settings.checkpoint_retention_days is not None,
            ),
        }
        enabled = {}
        for name, (spec, applicable) in wanted.items():
            trigger = parse_schedule(spec)
            if trigger is not None and applicable:
                enabled[name] = trigger
        return enabled

    def start(self) -> list[str]:
        """Start the scheduler; returns the names of the jobs it runs."""
        scheduler = AsyncIOScheduler(timezone=UTC)
        names = []
        for name, trigger in self.jobs().items():
            scheduler.add_job(
                self.run_once,
                trigger,
                args=[name],
                id=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
            names.append(name)
        scheduler.start()
        self._scheduler = scheduler
        logger.info("scheduler started: %s", ", ".join(names) or "no jobs enabled")
        return names

    async def aclose(self) -> None:
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=False)
            await asyncio.sleep(0)  # AsyncIOScheduler stops via call_soon_threadsafe
        self._scheduler = None
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    async def run_once(self, name: str) -> Any:
        """Run job `name` now unless another process (or instance) is running it; returns
        the job's result, or None when skipped."""
        body = self._bodies[name]
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            async with self.locks.try_job(name) as acquired:
                if not acquired:
                    logger.info("job %s skipped: running elsewhere", name)
                    return None
                started = asyncio.get_running_loop().time()
                result = await body()
                took = asyncio.get_running_loop().time() - started
                logger.info("job %s done in %.1fs: %s", name, took, _summary(result))
                return result
        except Exception:
            logger.exception("job %s failed", name)
            return None
        finally:
            if task is not None:
                self._running.discard(task)

    async def _sweep(self) -> int:
        sweep = getattr(self.bot.store, "asweep_ttl", None) or getattr(
            self.bot.store, "sweep_ttl", None
        )
        if sweep is None:
            return 0
        return int(await sweep())

    async def _consolidate(self) -> list[Any]:
        await self.bot.flush_memories()
        merged = await consolidate(
            self.bot.store, self.bot.model, threshold=self.bot.settings.consolidate_threshold
        )
        if (days := self.bot.settings.episode_retention_days) is not None:
            pruned = await prune_episodes(self.bot.store, older_than=timedelta(days=days))
            logger.info("episodes older than %g days deleted: %d", days, pruned)
        return merged

    async def _prune(self) -> list[str]:
        days = self.bot.settings.checkpoint_retention_days
        if days is None:
            return []
        return await prune_checkpoints(
            self.bot.checkpointer, timedelta(days=days), lock=self.bot.locks.thread_turn
        )


def _summary(result: Any) -> str:
    return f"{len(result)} item(s)" if isinstance(result, list) else str(result)
