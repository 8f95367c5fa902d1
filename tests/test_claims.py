"""Event claims: the first claim of an id wins, in one process and across processes."""

from __future__ import annotations

import asyncio
import os
import uuid

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
