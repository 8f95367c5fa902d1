"""Scheduled jobs: parsing schedules, starting/stopping with the bot, each job run once
with its effect checked, and the job lock giving one run across two schedulers."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from langgraph.store.qdrant import base as qdrant_base

from bots.cli import scheduled_jobs
from engine import scheduler as scheduler_module
from engine.bot import MemoryBot
from engine.locks import LocalLocks, open_locks
from engine.memory.consolidate import MERGE_TOOL
from engine.memory.manager import MEMORY_TOOL
from engine.scheduler import MemoryScheduler, parse_schedule
from engine.settings import Settings
from tests.fakes.llm import FakeLLM, ToolUse
from tests.fakes.waits import WAIT
from tests.llm_settings import fake_llm_settings

POSTGRES = os.environ.get("MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BERLIN = ["I live in Berlin.", "I am based in Berlin.", "Berlin is where I live."]


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def settings_for(fake: FakeLLM, data_dir: Path, **extra: Any) -> Settings:
    return fake_llm_settings(fake, data_dir, memory_debounce_seconds=0, **extra)


def tool_payload(body: dict[str, Any]) -> Any:
    return json.loads(body["messages"][0]["content"])


def curator(body: dict[str, Any]) -> str | ToolUse:
    """Adds each thing said as a memory (a model that misses paraphrases), and when asked
    about duplicates, groups the three Berlin sentences and leaves the rest alone."""
    if not body.get("tools"):
        return "ok"
    if body["tools"][0]["name"] == MEMORY_TOOL.name:
        said = tool_payload(body)["new_messages"][0]["text"]
        return ToolUse(MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": said}]})
    listed = tool_payload(body)
    same = [m["id"] for m in listed if "Berlin" in m["text"] and "work" not in m["text"]]
    return ToolUse(
        MERGE_TOOL.name,
        {"duplicates": [{"ids": same, "merged_text": "I live in Berlin."}] if same else []},
    )


def clock_at(moment: datetime) -> type[datetime]:
    """`datetime` whose `now()` is `moment`: a job's clock, set instead of slept to."""

    class At(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return moment.astimezone(tz) if tz else moment

    return At


def test_schedules_parse() -> None:
    assert parse_schedule("off") is None
    assert isinstance(parse_schedule("every 30m"), IntervalTrigger)
    assert parse_schedule("every 2h").interval.total_seconds() == 7200
    assert isinstance(parse_schedule("0 3 * * *"), CronTrigger)
    with pytest.raises(ValueError, match="bad job schedule"):
        parse_schedule("at teatime")


async def test_scheduler_starts_and_stops_with_the_bot(tmp_path, local_embeddings) -> None:
    settings = Settings(data_dir=tmp_path, memory_ttl_days=1, job_consolidate="off")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        async with scheduled_jobs(bot) as scheduler:
            assert scheduler is not None
            assert set(scheduler.jobs()) == {"ttl_sweep"}  # prune: no retention set
            assert scheduler._scheduler is not None and scheduler._scheduler.running
            apscheduler = scheduler._scheduler
        assert not apscheduler.running
    off = Settings(data_dir=tmp_path, scheduler_enabled=False)
    async with MemoryBot.open(off, embeddings=local_embeddings) as bot:
        async with scheduled_jobs(bot) as scheduler:
            assert scheduler is None


async def test_ttl_sweep_deletes_expired_memories(
    tmp_path, local_embeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, memory_ttl_days=1)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.remember("u1", "I like tea")
        between = datetime.now(UTC)
        await bot.remember("u2", "I like coffee")
        # The sweep runs one day after `between` (the store's clock, not a sleep): what was
        # written before it has expired, what came after survives.
        monkeypatch.setattr(qdrant_base, "_now", lambda: between + timedelta(days=1))
        scheduler = MemoryScheduler(bot, bot.locks)
        assert await scheduler.run_once("ttl_sweep") >= 2  # the memory and its history entry
        assert await bot.memories("u1") == []
        assert [m.value["text"] for m in await bot.memories("u2")] == ["I like coffee."]


async def test_consolidation_merges_paraphrases_into_one_memory(
    fake, tmp_path, local_embeddings
) -> None:
    fake.reply = curator
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        for n, text in enumerate([*BERLIN, "I work in Berlin as a nurse."]):
            await bot.chat(user_id="u1", thread_id=f"t{n}", text=text)
        await bot.chat(user_id="u2", thread_id="other", text="I live in Berlin.")
        await bot.flush_memories()
        assert len(await bot.memories("u1")) == 4

        merges = await MemoryScheduler(bot, bot.locks).run_once("consolidate")
        assert len(merges) == 1
        texts = sorted(m.value["text"] for m in await bot.memories("u1"))
        assert texts == ["I live in Berlin.", "I work in Berlin as a nurse."]
        assert len(await bot.memories("u2")) == 1  # another user's memory is not touched
        history = await bot.memory_history("u1")
        merged = [h for h in history if h["action"] == "merged"]
        assert len(merged) == 3 and {h["by"] for h in merged} == {"consolidation"}
        # Only the user's own similar memories were shown to the model.
        shown = [
            tool_payload(b)
            for b in fake.tool_requests()
            if b["tools"][0]["name"] == "report_duplicates"
        ]
        assert all(len(group) <= 4 for group in shown)


async def test_offline_consolidation_merges_only_near_identical_memories(
    tmp_path, local_embeddings
) -> None:
    async with MemoryBot.open(Settings(data_dir=tmp_path), embeddings=local_embeddings) as bot:
        # (Not BERLIN[1]: "I am based in Berlin" fills the same home slot as BERLIN[0].)
        for text in ["I like green tea", "I love green tea", BERLIN[0], BERLIN[2]]:
            await bot.remember("u1", text)
        assert len(await bot.memories("u1")) == 4
        await MemoryScheduler(bot, bot.locks).run_once("consolidate")
        texts = sorted(m.value["text"] for m in await bot.memories("u1"))
        # Paraphrases need a model's judgement; near-repeats (0.96) merge, keeping the
        # newest wording.
        assert texts == ["Berlin is where I live.", "I live in Berlin.", "I love green tea."]


async def test_prune_deletes_idle_conversations_only(
    tmp_path, local_embeddings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path, checkpoint_retention_days=1)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        await bot.chat(user_id="u1", thread_id="old", text="hello")
        between = datetime.now(UTC)
        await bot.chat(user_id="u1", thread_id="new", text="hello again")
        # The job runs one day after `between` (its clock, not a sleep): idle since before
        # it is idle for more than the retention, spoken to after it is not.
        monkeypatch.setattr(scheduler_module, "datetime", clock_at(between + timedelta(days=1)))
        pruned = await MemoryScheduler(bot, bot.locks).run_once("prune_checkpoints")
        assert pruned == ["old"]
        assert await bot.history("old") == []
        assert len(await bot.history("new")) == 2


@pytest.mark.parametrize("backend", ["local", "postgres"])
async def test_two_schedulers_run_a_job_once(fake, tmp_path, local_embeddings, backend) -> None:
    fake.reply = curator
    async with MemoryBot.open(settings_for(fake, tmp_path), embeddings=local_embeddings) as bot:
        for n, text in enumerate(BERLIN):
            await bot.chat(user_id="u1", thread_id=f"t{n}", text=text)
        await bot.flush_memories()
        # The merge verdict waits for the test: the run that got the job holds it meanwhile.
        verdict = fake.hold(lambda body: body.get("tools", [{}])[0].get("name") == MERGE_TOOL.name)
        async with AsyncExitStack() as stack:
            if backend == "local":
                locks = [LocalLocks(tmp_path / "locks") for _ in range(2)]
            else:
                opened = [open_locks(POSTGRES, tmp_path) for _ in range(2)]
                locks = [await stack.enter_async_context(one) for one in opened]
            runs = [
                asyncio.create_task(MemoryScheduler(bot, one).run_once("consolidate"))
                for one in locks
            ]
            await verdict.arrived()
            done, _ = await asyncio.wait(runs, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED)
            assert [run.result() for run in done] == [None]  # the other found the job taken
            verdict.release()
            results = await asyncio.gather(*runs)
        ran = [r for r in results if r is not None]
        assert len(ran) == 1 and len(ran[0]) == 1  # one run, which merged the three
        assert len(fake.tool_requests()) == 3 + 1  # three extractions, one merge verdict
        assert len(await bot.memories("u1")) == 1
