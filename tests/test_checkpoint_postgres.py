"""`engine.checkpoint` against a real PostgreSQL (and SQLite files).

Postgres comes from `MEMBOT_TEST_POSTGRES_URL` (default: the CI server `.ci/postgres`
provides). These tests never skip: without a server they fail and say how to get one.
Each Postgres test works in a schema of its own, so migrations run from scratch and
reruns never see old rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.func import entrypoint
from langgraph.pregel import Pregel

from engine.checkpoint import is_postgres_url, open_checkpointer, sqlite_path
from engine.sqlite_saver import ThreadedSqliteSaver
from tests.fakes.waits import WAIT, eventually

POSTGRES_URL = os.environ.get(
    "MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
PREVIOUS = "__previous__"


def build_notebook(checkpointer: BaseCheckpointSaver) -> Pregel:
    """The smallest `previous` workflow: each call appends a word to the thread's list."""

    @entrypoint(checkpointer=checkpointer)
    async def notebook(
        word: str, *, previous: list[str] | None
    ) -> entrypoint.final[list[str], list[str]]:
        words = [*(previous or []), word]
        return entrypoint.final(value=words, save=words)

    return notebook


def config(thread_id: str) -> dict[str, dict[str, str]]:
    return {"configurable": {"thread_id": thread_id}}


async def test_is_postgres_url() -> None:
    assert is_postgres_url("postgresql://u@h/db")
    assert is_postgres_url("postgres://u@h/db")
    assert is_postgres_url("PostgreSQL://u@h/db")
    for other in (None, "", "sqlite:///x.db", "data/checkpoints.sqlite", "mysql://h/db"):
        assert not is_postgres_url(other)


async def test_sqlite_path_variants(tmp_path: Path) -> None:
    default = tmp_path / "default.sqlite"
    assert sqlite_path(None, default) == default
    assert sqlite_path("", default) == default
    assert sqlite_path("data/c.sqlite", default) == Path("data/c.sqlite")
    assert sqlite_path("sqlite:///data/c.sqlite", default) == Path("data/c.sqlite")
    assert sqlite_path("sqlite:////abs/c.sqlite", default) == Path("/abs/c.sqlite")
    with pytest.raises(ValueError, match="needs a file path"):
        sqlite_path("sqlite:///", default)
    with pytest.raises(ValueError, match="'mysql'") as err:
        sqlite_path("mysql://root:s3cret@db/x", default)
    assert "s3cret" not in str(err.value)


async def test_postgres_round_trip_through_entrypoint(pg_url: str, tmp_path: Path) -> None:
    thread, other = f"t-{uuid.uuid4()}", f"t-{uuid.uuid4()}"
    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite") as saver:
        assert isinstance(saver, AsyncPostgresSaver)
        notebook = build_notebook(saver)
        assert await notebook.ainvoke("hello", config(thread)) == ["hello"]
        assert await notebook.ainvoke("world", config(thread)) == ["hello", "world"]
        assert await notebook.ainvoke("elsewhere", config(other)) == ["elsewhere"]

    # A new pool, as after a restart or in another process: the thread continues.
    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite") as saver:
        saved = await saver.aget_tuple(config(thread))
        assert saved is not None
        assert saved.checkpoint["channel_values"][PREVIOUS] == ["hello", "world"]
        notebook = build_notebook(saver)
        assert await notebook.ainvoke("again", config(thread)) == ["hello", "world", "again"]

    assert not (tmp_path / "unused.sqlite").exists()
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread,))
        row = await cur.fetchone()
        # Only the latest is kept (tests/test_checkpoint_bounds.py has the details).
        assert row is not None and row[0] == 1


async def test_postgres_scheme_alias(pg_url: str, tmp_path: Path) -> None:
    url = "postgres://" + pg_url.split("://", 1)[1]
    thread = f"t-{uuid.uuid4()}"
    async with open_checkpointer(url, tmp_path / "unused.sqlite") as saver:
        assert isinstance(saver, AsyncPostgresSaver)
        assert await build_notebook(saver).ainvoke("hi", config(thread)) == ["hi"]


async def test_concurrent_threads_share_one_saver(pg_url: str, tmp_path: Path) -> None:
    threads = [f"t-{uuid.uuid4()}" for _ in range(20)]

    async def converse(notebook: Pregel, thread: str) -> list[str]:
        await notebook.ainvoke(f"{thread}-1", config(thread))
        return await notebook.ainvoke(f"{thread}-2", config(thread))

    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite", pool_size=4) as saver:
        notebook = build_notebook(saver)
        results = await asyncio.gather(*(converse(notebook, t) for t in threads))
    assert results == [[f"{t}-1", f"{t}-2"] for t in threads]


async def test_saver_queries_run_side_by_side(pg_url: str, tmp_path: Path) -> None:
    """A write stuck behind a table lock must not hold up a read on another connection
    (AsyncPostgresSaver alone would queue every query behind one asyncio.Lock)."""
    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite") as saver:
        notebook = build_notebook(saver)
        thread = f"t-{uuid.uuid4()}"
        await notebook.ainvoke("first", config(thread))
        async with await psycopg.AsyncConnection.connect(pg_url) as blocker:
            await blocker.execute("LOCK TABLE checkpoint_writes IN EXCLUSIVE MODE")
            stuck = asyncio.create_task(
                saver.aput_writes(
                    {
                        "configurable": {
                            **config(thread)["configurable"],
                            "checkpoint_ns": "",
                            "checkpoint_id": "x",
                        }
                    },
                    [("ch", "value")],
                    task_id="t1",
                )
            )
            await eventually(lambda: lock_waits(pg_url, "checkpoint_writes"), interval=0.02)
            assert not stuck.done()  # it waits for the table lock, in Postgres
            saved = await asyncio.wait_for(saver.aget_tuple(config(thread)), WAIT)
            assert saved is not None
            await blocker.rollback()  # releases the table lock
        await asyncio.wait_for(stuck, WAIT)


async def lock_waits(url: str, table: str) -> int:
    """How many sessions wait for a lock on `table` (in the schema of `url`)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE relation = %s::regclass AND NOT granted",
            (table,),
        )
        row = await cur.fetchone()
    return row[0] if row else 0


async def test_processes_starting_together_migrate_once(pg_url: str, tmp_path: Path) -> None:
    """Bare `setup()` from four fresh processes at once fails with UniqueViolation."""

    async def start() -> list[str]:
        async with open_checkpointer(pg_url, tmp_path / "unused.sqlite", pool_size=2) as saver:
            return await build_notebook(saver).ainvoke("up", config(f"t-{uuid.uuid4()}"))

    assert await asyncio.gather(*(start() for _ in range(4))) == [["up"]] * 4


async def test_unreachable_postgres_fails_clearly(tmp_path: Path) -> None:
    url = "postgresql://postgres:s3cret@127.0.0.1:1/test"
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1/test") as err:
        async with open_checkpointer(url, tmp_path / "x.sqlite", connect_timeout=1):
            pass
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("form", ["default", "path", "absolute-url", "relative-url"])
async def test_sqlite_variants_round_trip(
    form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = tmp_path / "nested" / "default.sqlite"
    url, expected = {
        "default": (None, default),
        "path": (str(tmp_path / "dir" / "plain.sqlite"), tmp_path / "dir" / "plain.sqlite"),
        "absolute-url": (f"sqlite:///{tmp_path}/abs/c.sqlite", tmp_path / "abs" / "c.sqlite"),
        "relative-url": ("sqlite:///rel/c.sqlite", tmp_path / "rel" / "c.sqlite"),
    }[form]
    thread = f"t-{uuid.uuid4()}"
    async with open_checkpointer(url, default) as saver:
        assert isinstance(saver, ThreadedSqliteSaver)
        notebook = build_notebook(saver)
        assert await notebook.ainvoke("one", config(thread)) == ["one"]
    assert expected.is_file()
    async with open_checkpointer(url, default) as saver:
        assert await build_notebook(saver).ainvoke("two", config(thread)) == ["one", "two"]
