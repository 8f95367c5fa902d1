"""Claiming an event id once, so a re-delivered platform event is answered once.

Slack re-delivers an event it believes was not acknowledged (and a network can duplicate
one); with several replicas the copies may reach different processes. The first delivery
claims the id before any work starts, so a duplicate arriving mid-processing, anywhere, is
dropped too.

- `LocalClaims`: in-process, bounded, entries expire after `ttl_seconds` (Slack retries
  within minutes). Enough for one process (the embedded default).
- `PostgresClaims`: a table with the id as primary key; `INSERT ... ON CONFLICT DO
  NOTHING` is the atomic claim across every process sharing the database. Old rows are
  deleted now and then by whichever process happens to claim.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from engine.checkpoint import Pool, create_table_once, is_postgres_url, open_pool

TTL_SECONDS = 3600.0
CLEANUP_EVERY = 1000  # claims between deletions of expired rows


class Claims(Protocol):
    async def claim(self, key: str) -> bool:
        """True for the first claim of `key` (within the TTL), False for every later one."""
        ...


class LocalClaims:
    def __init__(self, ttl_seconds: float = TTL_SECONDS, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    async def claim(self, key: str) -> bool:
        now = time.monotonic()
        while self._seen and (
            len(self._seen) >= self._max or next(iter(self._seen.values())) < now - self._ttl
        ):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class PostgresClaims:
    TABLE = "membot_event_claims"

    def __init__(self, pool: Pool, ttl_seconds: float = TTL_SECONDS) -> None:
        self.pool = pool
        self._ttl = ttl_seconds
        self._claims = 0

    async def setup(self) -> None:
        await create_table_once(
            self.pool,
            f"CREATE TABLE IF NOT EXISTS {self.TABLE} ("
            " key text PRIMARY KEY,"
            " claimed_at timestamptz NOT NULL DEFAULT now())",
            name=self.TABLE,
        )

    async def claim(self, key: str) -> bool:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO {self.TABLE} (key) VALUES (%s) ON CONFLICT (key) DO NOTHING",
                (key,),
            )
            claimed = cur.rowcount == 1
            self._claims += 1
            if self._claims % CLEANUP_EVERY == 0:
                await conn.execute(
                    f"DELETE FROM {self.TABLE} "
                    "WHERE claimed_at < now() - make_interval(secs => %s)",
                    (self._ttl,),
                )
        return claimed


@asynccontextmanager
async def open_claims(checkpoint_url: str | None) -> AsyncIterator[Claims]:
    """Shared claims in Postgres when the checkpoints are there (several replicas), else
    in-process ones."""
    if not is_postgres_url(checkpoint_url):
        yield LocalClaims()
        return
    async with open_pool(checkpoint_url, max_size=4, name="membot-claims") as pool:
        claims = PostgresClaims(pool)
        await claims.setup()
        yield claims
