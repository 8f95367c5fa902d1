"""Memory quality, the benchmark of record: does the bot remember what people say?

LongMemEval-style, on `bench/data/memory_quality.json` (written for membot: 14 people,
~60 days of casual conversations with facts said in passing, task-chat haystack
sessions, and questions asked later in new threads). It drives the product path: one
`MemoryBot` with the default configuration a user gets from `make run` (offline model,
local MiniLM embedder, embedded Qdrant Edge store, SQLite checkpoints), every message
through `chat()` with the time it was sent, every question in a brand-new thread.

Per question type it reports:
- evidence recall@1 / @5: the question run through recall (the same query the turn
  makes); a hit is a recalled memory holding the evidence (the message itself, or a
  fact holding the answer);
- newest first (updates): the first recalled memory holding either value holds the new;
- accuracy: the reply contains an accepted answer (temporal: and the day it was said),
  and no stale value;
- stale: replies stating a replaced value; abstained: replies saying "I don't know";
- leaks: isolation questions whose reply states another person's value.

Run: `.venv/bin/python bench/memory_quality.py [--quick] [--json out.json] [--misses]`.
`--quick` (CI smoke run) takes three people; its figures are not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import header, ratio, table, target, write_json
from engine.bot import MemoryBot
from engine.memory.recall import Recalled, recall
from engine.settings import Settings

DATA = Path(__file__).parent / "data" / "memory_quality.json"
QUICK_PERSONAS = ("p01", "p02", "p03")
TYPES = ("single", "update", "temporal", "abstain", "isolation")
ANSWERABLE = ("single", "update", "temporal")
DONT_KNOW = "i don't know"
# The conversations end the day before the questions are asked.
DAYS_BEFORE_NOW = 60


@dataclass
class Tally:
    n: int = 0
    hit1: int = 0
    hit5: int = 0
    ranked: int = 0  # questions with evidence (recall measured)
    correct: int = 0
    stale: int = 0
    abstained: int = 0
    leaks: int = 0
    newest_first: int = 0
    misses: list[dict[str, Any]] = field(default_factory=list)


def _score(score: float | None) -> str:
    return "by key" if score is None else f"{score:.3f}"


def _has(text: str, needles: list[str]) -> bool:
    lowered = text.lower()
    return any(n.lower() in lowered for n in needles)


def _holds_evidence(memory: Recalled, question: dict[str, Any]) -> bool:
    return _has(memory.text, question["evidence"]) or _has(memory.text, question["answers"])


def _day_forms(day: datetime) -> list[str]:
    month, short = day.strftime("%B"), day.strftime("%b")
    return [
        f"{day.day} {short}",
        f"{day.day} {month}",
        f"{short} {day.day}",
        f"{month} {day.day}",
        day.strftime("%Y-%m-%d"),
    ]


def _correct(q: dict[str, Any], reply: str, start: datetime) -> bool:
    if _has(reply, q["stale"]):
        return False
    if q["type"] in ("abstain", "isolation"):
        return DONT_KNOW in reply.lower()
    if q["type"] == "temporal":
        dated = any(_has(reply, _day_forms(start + timedelta(days=d))) for d in q["answer_days"])
        return dated and (not q["answers"] or _has(reply, q["answers"]))
    return _has(reply, q["answers"])


def _newest_first(q: dict[str, Any], recalled: list[Recalled]) -> bool:
    for memory in recalled:
        if _holds_evidence(memory, q):
            return True
        if _has(memory.text, q["stale"]):
            return False
    return False


async def run(data: dict[str, Any], personas: set[str], data_dir: Path) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = (now - timedelta(days=DAYS_BEFORE_NOW)).replace(hour=9, minute=0, second=0)
    # The configuration `make run` gives, whatever this shell's environment says.
    settings = Settings(data_dir=data_dir, llm_provider="offline", embedding_provider="local")
    sessions = [
        (s["day"], p["id"], n, s)
        for p in data["personas"]
        if p["id"] in personas
        for n, s in enumerate(p["sessions"])
    ]
    tallies: dict[str, Tally] = defaultdict(Tally)
    began = time.perf_counter()
    turns = 0
    async with MemoryBot.open(settings) as bot:
        for day, pid, n, session in sorted(sessions, key=lambda s: (s[0], s[1], s[2])):
            for i, text in enumerate(session["messages"]):
                at = start + timedelta(days=day, minutes=7 * i + 13 * int(pid[1:]))
                await bot.chat(
                    user_id=f"bench:{pid}", thread_id=f"bench:{pid}:{n}", text=text, at=at
                )
                turns += 1
        await bot.flush_memories()  # days pass before anyone asks
        told = time.perf_counter() - began
        for q in data["questions"]:
            if q["persona"] not in personas:
                continue
            user = f"bench:{q['persona']}"
            recalled = await recall(bot.store, user, q["question"], limit=5)
            reply = await bot.chat(user_id=user, thread_id=f"ask:{q['id']}", text=q["question"])
            tally = tallies[q["type"]]
            tally.n += 1
            if q["type"] in ANSWERABLE:
                tally.ranked += 1
                tally.hit1 += any(_holds_evidence(m, q) for m in recalled[:1])
                tally.hit5 += any(_holds_evidence(m, q) for m in recalled[:5])
            if q["type"] == "update":
                tally.newest_first += _newest_first(q, recalled)
            ok = _correct(q, reply.text, start)
            tally.correct += ok
            tally.abstained += DONT_KNOW in reply.text.lower()
            stated_stale = _has(reply.text, q["stale"])
            if q["type"] == "isolation":
                tally.leaks += stated_stale
            else:
                tally.stale += stated_stale
            if not ok:
                tally.misses.append(
                    {
                        "id": q["id"],
                        "type": q["type"],
                        "question": q["question"],
                        "expected": q["answers"] or "I don't know",
                        "stale": q["stale"],
                        "reply": reply.text,
                        "recalled": [f"{_score(m.score)} {m.kind}: {m.text}" for m in recalled],
                    }
                )
    return {
        "tallies": tallies,
        "turns": turns,
        "told_seconds": told,
        "total_seconds": time.perf_counter() - began,
    }


def report(result: dict[str, Any], *, quick: bool) -> tuple[str, bool]:
    tallies: dict[str, Tally] = result["tallies"]
    rows = []
    for kind in TYPES:
        t = tallies.get(kind, Tally())
        measured = kind in ANSWERABLE
        rows.append(
            [
                kind,
                t.n,
                ratio(t.hit1, t.ranked) if measured else None,
                ratio(t.hit5, t.ranked) if measured else None,
                ratio(t.correct, t.n),
                t.stale if kind != "isolation" else None,
                t.abstained,
                t.leaks if kind == "isolation" else None,
            ]
        )
    answerable = [tallies.get(k, Tally()) for k in ANSWERABLE]
    n_ans = sum(t.n for t in answerable)
    ranked = sum(t.ranked for t in answerable)
    updates = tallies.get("update", Tally())
    never = [tallies.get(k, Tally()) for k in ("abstain", "isolation")]
    lines = [
        table(
            [
                "type",
                "questions",
                "recall@1",
                "recall@5",
                "accuracy",
                "stale stated",
                "abstained",
                "leaks",
            ],
            rows,
        ),
        "",
        f"{result['turns']} messages told in {result['told_seconds']:.0f} s; "
        f"whole run {result['total_seconds']:.0f} s.",
        "",
    ]
    checks = [
        target(
            "answerable accuracy (offline, end to end)",
            ratio(sum(t.correct for t in answerable), n_ans),
            0.75,
        ),
        target("evidence recall@5", ratio(sum(t.hit5 for t in answerable), ranked), 0.95),
        target("evidence recall@1", ratio(sum(t.hit1 for t in answerable), ranked), 0.80),
        target("updates: newest ranked first", ratio(updates.newest_first, updates.n), 0.95),
        target(
            "updates: stale value stated", float(updates.stale), 0, at_least=False, fmt="{:.0f}"
        ),
        target(
            "never said: I don't know",
            ratio(sum(t.abstained for t in never), sum(t.n for t in never)),
            0.90,
        ),
        target(
            "isolation leaks",
            float(tallies.get("isolation", Tally()).leaks),
            0,
            at_least=False,
            fmt="{:.0f}",
        ),
    ]
    lines += [line for line, _ in checks]
    if quick:
        lines.append("(--quick: three people only; a smoke run, not the benchmark's figures)")
    return "\n".join(lines), all(met for _, met in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="three people (CI smoke run)")
    parser.add_argument("--json", type=Path, help="write the figures and misses here")
    parser.add_argument("--misses", action="store_true", help="print every missed question")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    data = json.loads(args.data.read_text())
    personas = set(QUICK_PERSONAS) if args.quick else {p["id"] for p in data["personas"]}
    with tempfile.TemporaryDirectory(prefix="membot-quality-") as tmp:
        result = asyncio.run(run(data, personas, Path(tmp)))
    text, _ = report(result, quick=args.quick)
    print(header("Memory quality (offline default, through MemoryBot)"))
    print(text)
    if args.misses:
        for t in result["tallies"].values():
            for miss in t.misses:
                print(json.dumps(miss, ensure_ascii=False))
    write_json(
        args.json,
        {k: vars(t) for k, t in result["tallies"].items()}
        | {"turns": result["turns"], "seconds": result["total_seconds"]},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
