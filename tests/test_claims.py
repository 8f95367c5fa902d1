"""Event claims: the first claim of an id wins, in one process and across processes."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest

from engine.claims import LocalClaims, PostgresClaims, open_claims

POSTGRES = os.environ.get("MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def test_local_claims_are_first_come_and_expire() -> None:
    claims = LocalClaims(ttl_seconds=0.2)
    assert await claims.claim("e1") is True
    assert await claims.claim("e1") is False
    assert await claims.claim("e2") is True
    await asyncio.sleep(0.3)
    assert await claims.claim("e1") is True  # Slack stopped retrying long ago


async def test_local_claims_are_bounded() -> None:
    claims = LocalClaims(max_entries=3)
    for key in "abcd":
        assert await claims.claim(key)
    assert await claims.claim("a") is True  # the oldest entry made room


@pytest.mark.parametrize("spelling", ["postgresql", "postgres"])
async def test_postgres_claims_hold_across_pools(spelling: str) -> None:
    url = POSTGRES.replace("postgresql://", f"{spelling}://", 1)
    async with open_claims(url) as first, open_claims(url) as second:
        assert isinstance(first, PostgresClaims) and first.pool is not second.pool
        keys = [f"test:{uuid.uuid4()}" for _ in range(10)]
        for key in keys:  # 10 racers per key, half on each "process"
            racers = [(first if n % 2 else second).claim(key) for n in range(10)]
            assert sum(await asyncio.gather(*racers)) == 1
        assert not await first.claim(keys[0])
        assert await second.claim(f"test:{uuid.uuid4()}")


async def test_without_postgres_claims_are_local() -> None:
    async with open_claims(None) as claims:
        assert isinstance(claims, LocalClaims)


async def test_replicas_starting_together_on_an_empty_database(pg_url: str) -> None:
    """`CREATE TABLE IF NOT EXISTS` races under concurrency (UniqueViolation on pg_type);
    the claims and journal tables are created under an advisory lock instead."""
    from contextlib import AsyncExitStack

    from engine.memory.outbox import open_outbox

    async with AsyncExitStack() as stack:

        async def start() -> None:
            await stack.enter_async_context(open_claims(pg_url))
            await stack.enter_async_context(open_outbox(pg_url, Path("unused")))

        await asyncio.gather(*(start() for _ in range(4)))


async def test_pool_checks_do_not_leak_prepared_statements(pg_url: str) -> None:
    from engine.checkpoint import open_pool

    async with open_pool(pg_url, max_size=1, name="leak-test") as pool:
        for _ in range(50):
            async with pool.connection() as conn:
                await conn.execute("SELECT 1", prepare=False)
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM pg_prepared_statements")
            row = await cur.fetchone()
    assert row is not None and row["n"] < 5
