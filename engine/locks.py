"""Coordination between coroutines and processes: one interface, two backends.

- `thread_turn(thread_id)` runs one turn of a conversation at a time. Two turns at once
  would both read the same `previous` messages and the later save would drop the
  earlier turn.
- `user_memory(user_id)` runs one learning pass over a person's memories at a time.
  Learning reads their memories, asks the model, then writes: two passes at once (two
  threads of one person, or two replicas) would each miss the other's fact, so "I live
  in Berlin" and "I moved to Lisbon" said in two threads could both survive.
- `try_job(name)` lets exactly one holder run a scheduled job (TTL sweep, pruning...)
  now; the others skip it rather than queue up.

`LocalLocks` suits the single-process SQLite setup: thread turns are serialised within
the process (an `asyncio.Lock` per thread), jobs across processes on this machine
(`flock` on a file in `lock_dir`). `PostgresLocks` is for several processes sharing a
Postgres checkpoint database: both kinds of lock are session-level advisory locks, held
on a pooled connection of their own. Advisory locks need a real session: behind
PgBouncer use session pooling (transaction pooling would hand the lock to strangers).
If the connection dies (e.g. the server restarts) Postgres releases its locks at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import weakref
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

from engine.checkpoint import Pool, is_postgres_url, open_pool

logger = logging.getLogger(__name__)

_JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}")


class Locks(Protocol):
    def thread_turn(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        """Wait until no other turn of `thread_id` runs; hold that right until exit."""
        ...

    def user_memory(self, user_id: str) -> AbstractAsyncContextManager[None]:
        """Wait until no other learning pass over `user_id`'s memories runs; hold until
        exit."""
        ...

    def try_job(self, name: str) -> AbstractAsyncContextManager[bool]:
        """Without waiting: True if this holder may run job `name` now (exclusively, until
        exit), False if someone else is running it."""
        ...


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `pg_advisory_lock`: the first 8 bytes of
    BLAKE2b(name). Python's `hash()` would differ between processes."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def thread_key(thread_id: str) -> int:
    return advisory_key("thread:" + thread_id)


def user_memory_key(user_id: str) -> int:
    return advisory_key("memory:" + user_id)


def job_key(name: str) -> int:
    return advisory_key("job:" + name)


def check_job_name(name: str) -> str:
    """Job names become file names: letters, digits, `_.-`, not starting with a dot."""
    if not _JOB_NAME.fullmatch(name):
        raise ValueError(f"invalid job name {name!r}: use letters, digits, '_', '.', '-'")
    return name


class KeyedLocks:
    """An `asyncio.Lock` per key (thread id, user id). Weak values: a lock is freed as
    soon as nobody holds or awaits it, so idle keys cost nothing."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def __len__(self) -> int:
        return len(self._locks)


class LocalLocks:
    """In-process thread locks; job locks as `flock`s on `<lock_dir>/<name>.lock`."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir
        self._thread_lock = KeyedLocks()
        self._user_lock = KeyedLocks()

    @asynccontextmanager
    async def thread_turn(self, thread_id: str) -> AsyncIterator[None]:
        async with self._thread_lock(thread_id):
            yield

    @asynccontextmanager
    async def user_memory(self, user_id: str) -> AsyncIterator[None]:
        async with self._user_lock(user_id):
            yield

    @asynccontextmanager
    async def try_job(self, name: str) -> AsyncIterator[bool]:
        fd = _try_flock(self.lock_dir / f"{check_job_name(name)}.lock")
        if fd is None:
            yield False
            return
        try:
            yield True
        finally:
            os.close(fd)  # releases the flock


def _try_flock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None if another holds it. Each
    call opens its own file description, so two holders in one process exclude each
    other too. Lock files are never deleted: unlinking a file someone still waits on
    would let a third party lock a new file of the same name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


class PostgresLocks:
    """Session-level advisory locks, each on a connection checked out of `pool` for as
    long as it is held. Give the pool connections for as many different threads as may
    be in a turn at once, plus running jobs."""

    def __init__(self, pool: Pool, learning_pool: Pool | None = None) -> None:
        self.pool = pool
        # Learning holds its lock for a whole extraction call; on a pool of its own it can
        # never take the connections that turns wait for.
        self.learning_pool = learning_pool or pool
        # Coroutines of this process queue here first, so that only one of them per
        # thread holds (or waits with) a pool connection.
        self._thread_lock = KeyedLocks()
        self._user_lock = KeyedLocks()

    @asynccontextmanager
    async def thread_turn(self, thread_id: str) -> AsyncIterator[None]:
        async with self._thread_lock(thread_id):
            async with advisory_lock(self.pool, thread_key(thread_id), wait=True):
                yield

    @asynccontextmanager
    async def user_memory(self, user_id: str) -> AsyncIterator[None]:
        async with self._user_lock(user_id):
            async with advisory_lock(self.learning_pool, user_memory_key(user_id), wait=True):
                yield

    @asynccontextmanager
    async def try_job(self, name: str) -> AsyncIterator[bool]:
        async with advisory_lock(self.pool, job_key(check_job_name(name)), wait=False) as got:
            yield got


@asynccontextmanager
async def advisory_lock(pool: Pool, key: int, *, wait: bool) -> AsyncIterator[bool]:
    """Hold `pg_advisory_lock(key)` on a pooled connection until exit; yields True. With
    `wait=False` uses `pg_try_advisory_lock` and yields False at once if it is taken.

    A session-level lock outlives transactions, so it must be released before the
    connection returns to the pool. Whenever that cannot be guaranteed (cancelled while
    the server granted the lock, unlock failed) the connection is closed instead: ending
    the session releases its locks, and the pool replaces the connection.
    """
    async with pool.connection() as conn:
        try:
            if wait:
                await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                got = True
            else:
                cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (key,))
                row = await cur.fetchone()
                got = bool(row and row["got"])
        except BaseException:
            await conn.close()
            raise
        if not got:
            yield False
            return
        try:
            yield True
        finally:
            try:
                cur = await conn.execute("SELECT pg_advisory_unlock(%s) AS released", (key,))
                row = await cur.fetchone()
                if not (row and row["released"]):
                    logger.warning("advisory lock %d was already gone when released", key)
            except BaseException:
                await conn.close()
                raise


@asynccontextmanager
async def open_locks(
    checkpoint_url: str | None, lock_dir: Path, *, pool_size: int = 20
) -> AsyncIterator[Locks]:
    """`PostgresLocks` on pools of their own when the checkpoints are in Postgres (turns
    and learning hold their connection for a whole model call, which must not starve the
    checkpointer, and learning must not starve turns), else `LocalLocks` in `lock_dir`."""
    if is_postgres_url(checkpoint_url):
        # A turn waits here while other turns hold every connection: a burst of long
        # turns queues for minutes rather than failing after psycopg_pool's default 30 s.
        async with (
            open_pool(
                checkpoint_url, max_size=pool_size, name="membot-locks", wait_timeout=600.0
            ) as pool,
            open_pool(
                checkpoint_url,
                max_size=max(2, pool_size // 4),
                name="membot-learning-locks",
                wait_timeout=600.0,
            ) as learning_pool,
        ):
            yield PostgresLocks(pool, learning_pool)
    else:
        yield LocalLocks(lock_dir)
