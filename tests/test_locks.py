"""`engine.locks` on both backends; the Postgres one against a real server.

Two `open_locks` instances have separate pools, i.e. separate Postgres sessions, exactly
as two bot processes would; a few tests also use a real child process. Postgres comes
from `MEMBOT_TEST_POSTGRES_URL`; without a server these tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

import psycopg
import pytest

from engine.locks import (
    LocalLocks,
    Locks,
    PostgresLocks,
    advisory_key,
    job_key,
    open_locks,
    thread_key,
)
from tests.conftest import POSTGRES_URL
from tests.fakes.waits import WAIT, eventually

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ["local", "postgres"]

OpenLocks = Callable[[], Awaitable[Locks]]
PG_POLL = 0.02  # seconds between looks at pg_locks (each look is a new connection)


@pytest.fixture
async def new_locks(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenLocks]:
    """Opens `Locks` like a new process would (for `backend`), all closed at the end."""
    backend: str = request.getfixturevalue("backend")
    url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    async with AsyncExitStack() as stack:

        async def open_one() -> Locks:
            return await stack.enter_async_context(open_locks(url, tmp_path / "locks"))

        yield open_one


def name(prefix: str) -> str:
    """Unique per test run, so reruns and parallel CI jobs never meet in Postgres."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class Overlap:
    """Counts how many holders are inside at once."""

    def __init__(self) -> None:
        self.inside = self.most = self.runs = 0

    async def hold(self, lock: AbstractAsyncContextManager[None], seconds: float = 0.03) -> None:
        async with lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
            await asyncio.sleep(seconds)
            self.inside -= 1
            self.runs += 1


async def advisory_waits(key: int) -> tuple[int, int]:
    """(granted, waiting) advisory locks on `key` in this database, from pg_locks."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted) "
            "FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        )
        row = await cur.fetchone()
    assert row is not None
    return row[0], row[1]


# -- keys, names, backend choice ---------------------------------------------------------


async def test_keys_are_stable_signed_64_bit() -> None:
    # Fixed values: processes of different releases must still agree on every key.
    assert thread_key("abc") == advisory_key("thread:abc") == -5354725595215059544
    assert job_key("nightly") == advisory_key("job:nightly") == -124096806326277859
    assert thread_key("nightly") != job_key("nightly")
    for text in ("", "x", "slack:T1:C2:1700000000.000100", "\udcff"):
        assert -(2**63) <= advisory_key(text) < 2**63


@pytest.mark.parametrize("backend", BACKENDS)
async def test_job_names_must_be_file_names(backend: str, new_locks: OpenLocks) -> None:
    locks = await new_locks()
    for bad in ("../escape", "a/b", ".hidden", "", "sp ace"):
        with pytest.raises(ValueError, match="invalid job name"):
            async with locks.try_job(bad):
                pass


async def test_open_locks_picks_the_backend(postgres_url: str, tmp_path: Path) -> None:
    for url in (None, "", "sqlite:///data/c.sqlite", "data/c.sqlite"):
        async with open_locks(url, tmp_path) as locks:
            assert isinstance(locks, LocalLocks)
            assert locks.lock_dir == tmp_path
    async with open_locks(postgres_url, tmp_path) as locks:
        assert isinstance(locks, PostgresLocks)


# -- thread turns ------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_turns_of_one_thread_never_overlap(backend: str, new_locks: OpenLocks) -> None:
    locks, thread, overlap = await new_locks(), name("thread"), Overlap()
    await asyncio.gather(*(overlap.hold(locks.thread_turn(thread)) for _ in range(6)))
    assert (overlap.runs, overlap.most) == (6, 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_different_threads_run_at_once(backend: str, new_locks: OpenLocks) -> None:
    locks = await new_locks()
    everyone_inside = asyncio.Barrier(4)  # times out unless all four are inside together

    async def turn(thread: str) -> None:
        async with locks.thread_turn(thread):
            await asyncio.wait_for(everyone_inside.wait(), WAIT)

    await asyncio.gather(*(turn(name("thread")) for _ in range(4)))


async def test_local_thread_locks_are_freed(tmp_path: Path) -> None:
    locks = LocalLocks(tmp_path)
    async with locks.thread_turn("a"), locks.thread_turn("b"):
        assert len(locks._thread_lock) == 2
    assert len(locks._thread_lock) == 0


# -- one learning pass per person ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_learning_passes_over_one_person_never_overlap(
    backend: str, new_locks: OpenLocks
) -> None:
    # Two replicas (two instances, two sessions on Postgres) learning for the same person.
    one, two, user, overlap = await new_locks(), await new_locks(), name("user"), Overlap()
    if backend == "local":
        two = one  # one process owns an embedded data dir
    holders = [one, two] * 3
    await asyncio.gather(*(overlap.hold(locks.user_memory(user)) for locks in holders))
    assert (overlap.runs, overlap.most) == (6, 1)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_persons_learning_does_not_block_their_turns_or_others(
    backend: str, new_locks: OpenLocks
) -> None:
    locks, user = await new_locks(), name("user")
    everyone_inside = asyncio.Barrier(3)

    async def inside(lock: AbstractAsyncContextManager[None]) -> None:
        async with lock:
            await asyncio.wait_for(everyone_inside.wait(), WAIT)

    # The person's learning, another person's learning and a turn named like the person.
    await asyncio.gather(
        inside(locks.user_memory(user)),
        inside(locks.user_memory(name("user"))),
        inside(locks.thread_turn(user)),
    )


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_turns_exclude_across_processes(backend: str, new_locks: OpenLocks) -> None:
    one, two, thread, overlap = await new_locks(), await new_locks(), name("thread"), Overlap()
    holders = [one, two] * 3
    await asyncio.gather(*(overlap.hold(h.thread_turn(thread)) for h in holders))
    assert (overlap.runs, overlap.most) == (6, 1)

    entered = asyncio.Event()

    async def second() -> None:
        async with two.thread_turn(thread):
            entered.set()

    async with one.thread_turn(thread):
        waiter = asyncio.create_task(second())
        await eventually(lambda: _waiting(thread_key(thread), 1), interval=PG_POLL)  # blocked
        assert not entered.is_set()
    await asyncio.wait_for(waiter, WAIT)
    assert entered.is_set()


async def _waiting(key: int, count: int) -> bool:
    return (await advisory_waits(key))[1] == count


@pytest.mark.parametrize("backend", ["postgres"])
async def test_waiters_in_one_process_queue_locally(backend: str, new_locks: OpenLocks) -> None:
    """Only one coroutine per process and thread holds or waits with a connection."""
    one, two, thread = await new_locks(), await new_locks(), name("thread")
    key = thread_key(thread)
    release = asyncio.Event()

    async def turn(locks: Locks) -> None:
        async with locks.thread_turn(thread):
            await release.wait()

    tasks = [asyncio.create_task(turn(one)) for _ in range(4)]
    tasks.append(asyncio.create_task(turn(two)))
    local = one._thread_lock(thread)  # type: ignore[attr-defined]

    async def settled() -> bool:
        # `one`'s three other turns wait on its local lock (so they cannot reach Postgres
        # later), and `two` waits in Postgres.
        return len(local._waiters or ()) == 3 and await _waiting(key, 1)

    await eventually(settled, interval=PG_POLL)
    assert await advisory_waits(key) == (1, 1)  # one holder; only `two` waits in Postgres
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
    assert await advisory_waits(key) == (0, 0)


@pytest.mark.parametrize("backend", ["postgres"])
async def test_cancelled_waiter_leaves_no_lock(backend: str, new_locks: OpenLocks) -> None:
    one, two, thread = await new_locks(), await new_locks(), name("thread")
    key = thread_key(thread)
    async with one.thread_turn(thread):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3), two.thread_turn(thread):
                pytest.fail("entered a turn another process holds")
        assert await advisory_waits(key) == (1, 0)
    assert await advisory_waits(key) == (0, 0)
    async with asyncio.timeout(WAIT), two.thread_turn(thread):
        assert await advisory_waits(key) == (1, 0)


# -- scheduled jobs ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_exactly_one_holder_runs_a_job(backend: str, new_locks: OpenLocks) -> None:
    one, two, job = await new_locks(), await new_locks(), name("job")
    async with one.try_job(job) as first, two.try_job(job) as second:
        assert (first, second) == (True, False)
        async with one.try_job(job) as again:  # a second holder in the same process
            assert again is False
        async with two.try_job(name("other-job")) as other:
            assert other is True
    async with two.try_job(job) as after_release:
        assert after_release is True
    async with one.try_job(job) as after_release:
        assert after_release is True


@pytest.mark.parametrize("backend", BACKENDS)
async def test_job_released_when_body_fails(backend: str, new_locks: OpenLocks) -> None:
    one, two, job = await new_locks(), await new_locks(), name("job")
    with pytest.raises(RuntimeError):
        async with one.try_job(job) as got:
            assert got
            raise RuntimeError("job failed")
    async with two.try_job(job) as got:
        assert got is True


CHILD = """
import asyncio, sys
from pathlib import Path
from engine.locks import open_locks

async def main(url, lock_dir, job, thread):
    async with open_locks(url or None, Path(lock_dir)) as locks:
        async with locks.try_job(job) as got, locks.thread_turn(thread):
            print("held" if got else "busy", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.parametrize("backend", BACKENDS)
async def test_locks_exclude_a_real_child_process(
    backend: str, new_locks: OpenLocks, tmp_path: Path
) -> None:
    job, thread = name("job"), name("thread")
    url = POSTGRES_URL if backend == "postgres" else ""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, url, str(tmp_path / "locks"), job, thread,
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        assert await asyncio.wait_for(child.stdout.readline(), WAIT) == b"held\n"
        locks = await new_locks()
        async with locks.try_job(job) as got:
            assert got is False
        if backend == "postgres":  # local thread locks are per process by design
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3), locks.thread_turn(thread):
                    pytest.fail("entered a turn the child holds")
        child.stdin.write(b"done\n")
        await child.stdin.drain()
        assert await asyncio.wait_for(child.wait(), WAIT) == 0
        async with locks.try_job(job) as got, asyncio.timeout(WAIT), locks.thread_turn(thread):
            assert got is True
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
