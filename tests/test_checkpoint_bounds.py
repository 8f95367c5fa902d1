"""A thread keeps one checkpoint, however long it runs, on SQLite and on Postgres.

The bot reads only a thread's latest checkpoint, so each save deletes the older ones (with
their pending writes and, on Postgres, the blobs nothing references any more). Through
`MemoryBot`: 30 turns leave one row, the conversation is whole, a restart carries on, and
a save that fails deletes nothing. The nightly prune finds idle threads with one query
(it never walks the checkpoints) and deletes them, not a thread spoken to meanwhile.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.func import entrypoint
from langgraph.pregel import Pregel

from engine.bot import CHECKPOINT_FILE, STORAGE_APOLOGY, MemoryBot
from engine.checkpoint import (
    KeepLatestPostgresSaver,
    checkpoint_id_at,
    idle_threads,
    open_checkpointer,
)
from engine.scheduler import prune_checkpoints
from engine.settings import Settings
from engine.sqlite_saver import ThreadedSqliteSaver

TURNS = 30
SQLITE_TABLES = ("checkpoints", "writes")
POSTGRES_TABLES = ("checkpoints", "checkpoint_writes", "checkpoint_blobs")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    # Learning (and the compaction check after it) waits for a flush: it costs time, and
    # these short notes never reach the compaction budget.
    return Settings(
        data_dir=tmp_path, llm_provider="offline", checkpoint_url=url, memory_debounce_seconds=3600
    )


async def rows(settings: Settings, thread_id: str) -> tuple[int, ...]:
    """The thread's rows per table: checkpoints, writes (and blobs on Postgres)."""
    if settings.checkpoint_url:
        counts = []
        async with await psycopg.AsyncConnection.connect(settings.checkpoint_url) as conn:
            for table in POSTGRES_TABLES:
                cur = await conn.execute(
                    f"SELECT count(*) FROM {table} WHERE thread_id = %s", (thread_id,)
                )
                row = await cur.fetchone()
                counts.append(row[0] if row else 0)
        return tuple(counts)
    with closing(sqlite3.connect(settings.data_dir / CHECKPOINT_FILE)) as db:
        query = "SELECT count(*) FROM {} WHERE thread_id = ?"
        return tuple(
            db.execute(query.format(table), (thread_id,)).fetchone()[0] for table in SQLITE_TABLES
        )


def said(history: list[Any]) -> list[str]:
    return [str(m.content) for m in history if isinstance(m, HumanMessage)]


async def test_a_long_thread_keeps_one_checkpoint_and_carries_on(
    settings: Settings, local_embeddings
) -> None:
    thread, other = f"long-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    texts = [f"note {n}: the {n}th crate of apples arrived" for n in range(TURNS)]
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u2", thread_id=other, text="a thread of its own")
        before = await rows(settings, other)
        seen = set()
        for n, text in enumerate(texts):
            reply = await bot.chat(user_id="u1", thread_id=thread, text=text)
            assert not reply.error, reply.text
            if n % 10 == 9 or n < 2:
                seen.add(await rows(settings, thread))
        history = await bot.history(thread)
        await bot.flush_memories()
        assert await rows(settings, other) == before  # other threads are not touched

    # One checkpoint and no stale writes all along; on Postgres one blob per stored
    # channel, the same number after 2 turns as after 30.
    assert len(seen) == 1, seen
    (counts,) = seen
    assert counts[:2] == (1, 0)
    if settings.checkpoint_url:
        assert 1 <= counts[2] <= 2
    # Every turn is in the thread, in order, each answered (short notes: no compaction).
    assert said(history) == texts
    assert [type(m) for m in history] == [HumanMessage, AIMessage] * TURNS

    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:  # a restart
        assert await bot.history(thread) == history
        reply = await bot.chat(user_id="u1", thread_id=thread, text="what was note 29 about?")
        assert not reply.error, reply.text
        again = await bot.history(thread)
        assert said(again) == [*texts, "what was note 29 about?"]
    assert await rows(settings, thread) == counts


async def test_a_failed_save_deletes_nothing(tmp_path: Path, local_embeddings) -> None:
    """SQLite deletes the older checkpoints inside the INSERT that saves the new one: a
    save that fails (here a trigger aborts it as it deletes the older checkpoint) rolls
    back whole, the old checkpoint still there."""
    settings = Settings(data_dir=tmp_path, llm_provider="offline", memory_debounce_seconds=3600)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        saver = bot.checkpointer
        assert isinstance(saver, ThreadedSqliteSaver) and saver.keep_latest
        for text in ("first", "second"):
            await bot.chat(user_id="u1", thread_id="t", text=text)
        failing = "CREATE TEMP TRIGGER fail_save AFTER DELETE ON main.checkpoints "
        failing += "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        saver.conn.execute(failing)  # the saver's thread is idle between turns
        reply = await bot.chat(user_id="u1", thread_id="t", text="third")
        assert reply.text == STORAGE_APOLOGY  # nothing answered, nothing saved
        assert said(await bot.history("t")) == ["first", "second"]
        assert await rows(settings, "t") == (1, 0)
        saver.conn.execute("DROP TRIGGER temp.fail_save")
        await bot.chat(user_id="u1", thread_id="t", text="fourth")
        assert said(await bot.history("t")) == ["first", "second", "fourth"]
        assert await rows(settings, "t") == (1, 0)


def config(thread_id: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread_id}}


def notebook(saver: BaseCheckpointSaver) -> Pregel:
    """The smallest `previous` workflow; with LangGraph's default durability each run saves
    several checkpoints, with pending writes."""

    @entrypoint(checkpointer=saver)
    async def write(
        word: str, *, previous: dict[str, Any] | None
    ) -> entrypoint.final[list[str], dict[str, Any]]:
        words = [*(previous or {}).get("words", []), word]
        return entrypoint.final(value=words, save={"words": words, "count": len(words)})

    return write


async def test_postgres_prune_matches_langgraphs_keep_latest(pg_url: str, tmp_path: Path) -> None:
    """The one-statement prune after each save leaves what LangGraph's own
    `aprune(strategy="keep_latest")` leaves: the same rows in each table (blobs included)
    and the same latest state. (Saved "sync", so each step's writes land before the next
    checkpoint; in the background one can land after the prune and waits for the next.)"""
    kept, pruned = f"kept-{uuid.uuid4().hex[:8]}", f"pruned-{uuid.uuid4().hex[:8]}"
    words = [f"w{n}" for n in range(12)]
    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite", keep_latest=False) as saver:
        assert isinstance(saver, KeepLatestPostgresSaver) and not saver.keep_latest
        for word in words:
            await notebook(saver).ainvoke(word, config(pruned), durability="sync")
        settings = Settings(data_dir=tmp_path, checkpoint_url=pg_url)
        assert (await rows(settings, pruned))[0] >= len(words)  # every checkpoint kept
        await saver.aprune([pruned], strategy="keep_latest")
    async with open_checkpointer(pg_url, tmp_path / "unused.sqlite") as saver:
        for word in words:
            await notebook(saver).ainvoke(word, config(kept), durability="sync")
        assert await rows(settings, kept) == await rows(settings, pruned)
        mine = await saver.aget_tuple(config(kept))
        theirs = await saver.aget_tuple(config(pruned))
        assert mine is not None and theirs is not None
        values = mine.checkpoint["channel_values"]
        assert values == theirs.checkpoint["channel_values"]
        assert values["__previous__"] == {"words": words, "count": len(words)}


async def test_sqlite_keeps_every_checkpoint_when_asked(tmp_path: Path) -> None:
    """`keep_latest=False` is LangGraph's behaviour (a migration copying histories)."""
    path = tmp_path / "all.sqlite"
    async with ThreadedSqliteSaver.open(str(path), keep_latest=False) as saver:
        for word in ("a", "b", "c"):
            await notebook(saver).ainvoke(word, config("t"))
        history = [c async for c in saver.alist(config("t"))]
    assert len(history) >= 3
    async with ThreadedSqliteSaver.open(str(path)) as saver:  # the default prunes at the next save
        await notebook(saver).ainvoke("d", config("t"))
        history = [c async for c in saver.alist(config("t"))]
    assert len(history) == 1
    assert history[0].checkpoint["channel_values"]["__previous__"]["words"] == list("abcd")


def test_checkpoint_ids_sort_by_time() -> None:
    now = datetime.now(UTC)
    made = str(uuid6(clock_seq=0))
    assert checkpoint_id_at(now - timedelta(microseconds=1)) < made
    assert made < checkpoint_id_at(now + timedelta(milliseconds=5))
    assert checkpoint_id_at(now - timedelta(days=30)) < checkpoint_id_at(now)


async def test_idle_threads_are_pruned_without_walking_checkpoints(
    settings: Settings, local_embeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        saver = bot.checkpointer
        for thread in ("old", "resumed"):
            await bot.chat(user_id="u1", thread_id=thread, text="hello")
        boundary = datetime.now(UTC)
        await bot.chat(user_id="u1", thread_id="fresh", text="hello again")

        def no_walk(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the prune must not list checkpoints")

        monkeypatch.setattr(saver, "alist", no_walk)
        assert sorted(await idle_threads(saver, boundary)) == ["old", "resumed"]

        @asynccontextmanager
        async def resuming(thread_id: str) -> AsyncIterator[None]:
            # "resumed" is spoken to after the query found it idle, before its delete.
            if thread_id == "resumed":
                await bot.chat(user_id="u1", thread_id="resumed", text="I'm back")
            yield

        older_than = datetime.now(UTC) - boundary
        assert await prune_checkpoints(saver, older_than, lock=resuming) == ["old"]
        assert await bot.history("old") == []
        assert said(await bot.history("resumed")) == ["hello", "I'm back"]
        assert said(await bot.history("fresh")) == ["hello again"]
        assert set(await rows(settings, "old")) == {0}
        assert await idle_threads(saver, boundary) == []


async def test_other_savers_are_pruned_by_listing() -> None:
    """A saver without the query (here LangGraph's in-memory one) is walked with `alist`."""
    saver = InMemorySaver()
    await notebook(saver).ainvoke("a", config("old"))
    boundary = datetime.now(UTC)
    await notebook(saver).ainvoke("b", config("new"))
    assert await idle_threads(saver, boundary) == ["old"]
    assert await prune_checkpoints(saver, datetime.now(UTC) - boundary) == ["old"]
    assert await saver.aget_tuple(config("old")) is None
    assert await saver.aget_tuple(config("new")) is not None


def test_the_checkpoint_bench_runs(tmp_path: Path) -> None:
    """bench/checkpoint_bench.py keeps working (its figures live in the README)."""
    out = tmp_path / "checkpoints.json"
    done = subprocess.run(
        [sys.executable, "bench/checkpoint_bench.py", "--turns", "3", "--json", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| checkpoints kept | turns | checkpoint rows |" in done.stdout
    report = json.loads(out.read_text())
    assert report["before"]["checkpoint_rows"] == 3
    assert report["after"]["checkpoint_rows"] == 1
