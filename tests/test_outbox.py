"""The memory-learning journal: entries survive until applied, a failure keeps them, a
grace period leaves fresh entries alone, and two Postgres drainers never apply one entry
twice."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from engine.memory.outbox import Outbox, Pending, SqliteOutbox, open_outbox


def pending(n: int) -> Pending:
    return Pending(f"u{n}", "t", [HumanMessage(f"fact {n}"), AIMessage("ok")])


async def open_backend(stack: AsyncExitStack, backend: str, tmp_path: Path, pg_url: str) -> Outbox:
    url = pg_url if backend == "postgres" else None
    return await stack.enter_async_context(open_outbox(url, tmp_path))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


async def test_entries_survive_until_applied(backend, tmp_path, pg_url) -> None:
    async with AsyncExitStack() as stack:
        outbox = await open_backend(stack, backend, tmp_path, pg_url)
        first, second = await outbox.add(pending(1)), await outbox.add(pending(2))
        await outbox.add(pending(3))
        await outbox.remove(second)
        assert await outbox.size() == 2
        assert await outbox.drain(_fail, older_than=60) == 0  # all too fresh: left alone

        applied: list[Pending] = []

        async def apply(entry: Pending) -> None:
            if entry.user_id == "u3":
                raise ConnectionError("store still down")
            applied.append(entry)

        with pytest.raises(ConnectionError):
            await outbox.drain(apply, older_than=0)
        assert [e.user_id for e in applied] == ["u1"]
        assert applied[0].messages[0].content == "fact 1"
        assert isinstance(applied[0].messages[1], AIMessage)
        assert await outbox.size() == 1  # u3 stays for the next attempt
        assert first  # ids are real


async def _fail(entry: Pending) -> None:
    raise AssertionError("nothing should be applied")


async def test_sqlite_journal_survives_a_reopen(tmp_path) -> None:
    async with SqliteOutbox.open(tmp_path / "outbox.sqlite") as outbox:
        await outbox.add(pending(1))
    async with SqliteOutbox.open(tmp_path / "outbox.sqlite") as outbox:
        assert await outbox.size() == 1


async def test_two_postgres_drainers_apply_each_entry_once(tmp_path, pg_url) -> None:
    async with open_outbox(pg_url, tmp_path) as one, open_outbox(pg_url, tmp_path) as two:
        for n in range(20):
            await one.add(pending(n))
        seen: list[str] = []

        async def apply(entry: Pending) -> None:
            seen.append(entry.user_id)
            await asyncio.sleep(0.01)

        counts = await asyncio.gather(
            one.drain(apply, older_than=0), two.drain(apply, older_than=0)
        )
        assert sum(counts) == 20 and sorted(seen) == sorted(f"u{n}" for n in range(20))
        assert await one.size() == 0
