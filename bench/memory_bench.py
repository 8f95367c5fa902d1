"""Memory learning: what it costs the user (reply latency) and how well it recalls.

Offline: the "model" is the local fake Anthropic API (tests/fakes/llm.py) driven by the real
SDK, with a fixed latency per request; embeddings are the shipped local MiniLM model; the
store is the embedded Qdrant Edge default.

1. Reply latency, three setups on the same turns (each turn a new user and thread, so no
   turn waits on another's extraction):
   - `no learning`: the writer does nothing (the floor: chat model + recall + checkpoint);
   - `background` (membot's design): extraction after the reply, debounced;
   - `inline`: the guide's pattern, extraction inside the turn before the reply returns.
   "extraction adds" = background p50 - no-learning p50; the target is 0 ms (within noise).
2. Recall@5 across threads on `bench/data/cross_thread_recall.json`: each user tells their
   facts one per message in thread A; the fake extractor stores each message as said
   (a perfect extractor, so this measures retrieval); then every question is asked in a
   new thread B and we check whether the expected fact is among the memories the chat
   model was sent (top 5 in the system prompt).

Run: `.venv/bin/python bench/memory_bench.py [--turns N] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, from a checkout

from engine.bot import MemoryBot
from engine.embeddings.local import LocalEmbeddings
from engine.memory.manager import MEMORY_TOOL
from engine.memory.prompt import quote
from engine.memory.writer import Batch, DebouncedWriter
from tests.fakes.llm import FakeLLM, ToolUse
from tests.llm_settings import fake_llm_settings

FIXTURE = Path(__file__).parent / "data" / "cross_thread_recall.json"
CHAT_LATENCY = 0.2
EXTRACT_LATENCY = 0.3


def fake_model(body: dict[str, Any]) -> str | ToolUse:
    """Chat: a fixed answer. Extraction: store every user message as said."""
    if not body.get("tools"):
        return "Noted."
    payload = json.loads(body["messages"][0]["content"])
    said = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
    return ToolUse(MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": t} for t in said]})


settings = fake_llm_settings


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _nothing(batch: Batch) -> None:
    return None


async def reply_latency(
    fake: FakeLLM, embeddings: tuple[LocalEmbeddings, int], mode: str, turns: int
) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with MemoryBot.open(
            settings(fake, Path(tmp), memory_debounce_seconds=0.5), embeddings=embeddings
        ) as bot:
            if mode == "no learning":
                bot.writer = DebouncedWriter(_nothing, debounce=0.5)
            elif mode == "inline":
                from engine.workflow import build_chat_workflow

                bot.writer = DebouncedWriter(_nothing, debounce=0.5)
                bot.workflow = build_chat_workflow(
                    model=bot.model,
                    checkpointer=bot.checkpointer,
                    store=bot.store,
                    learn_inline=True,
                )
            latencies = []
            for n in range(turns):
                started = time.perf_counter()
                await bot.chat(user_id=f"u{n}", thread_id=f"t{n}", text=f"I live in city {n}.")
                latencies.append((time.perf_counter() - started) * 1000)
            await bot.flush_memories()
            return latencies


async def recall_at_5(
    fake: FakeLLM, embeddings: tuple[LocalEmbeddings, int], users: int | None
) -> dict[str, Any]:
    fixture = json.loads(FIXTURE.read_text())
    fixture["users"] = fixture["users"][:users]
    fake.delay = 0.0
    hits = total = 0
    misses: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with MemoryBot.open(
            settings(fake, Path(tmp), memory_debounce_seconds=0, memory_top_k=5),
            embeddings=embeddings,
        ) as bot:
            for user in fixture["users"]:
                for fact in user["told"]:
                    await bot.chat(user_id=user["id"], thread_id=f"{user['id']}:A", text=fact)
                await bot.flush_memories()
                for n, question in enumerate(user["asked"]):
                    await bot.chat(
                        user_id=user["id"],
                        thread_id=f"{user['id']}:B{n}",
                        text=question["question"],
                    )
                    system = fake.chat_requests()[-1]["system"]
                    expected = user["told"][question["expects"]]
                    total += 1
                    if quote(expected) in system:
                        hits += 1
                    else:
                        misses.append({"question": question["question"], "expected": expected})
    return {"cases": total, "hits": hits, "recall_at_5": hits / total, "misses": misses}


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--users", type=int, help="only the first N fixture users (smoke run)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    embedder = LocalEmbeddings()
    embedder.embed_query("warm up")
    embeddings = (embedder, embedder.dims)
    report: dict[str, Any] = {"chat_latency_ms": CHAT_LATENCY * 1000}
    async with FakeLLM(fake_model) as fake:
        fake.delay = lambda body: EXTRACT_LATENCY if body.get("tools") else CHAT_LATENCY
        latency = {}
        for mode in ("no learning", "background", "inline"):
            values = await reply_latency(fake, embeddings, mode, args.turns)
            latency[mode] = {
                "p50": statistics.median(values),
                "p99": percentile(values, 0.99),
            }
        report["latency_ms"] = latency
        report["recall"] = await recall_at_5(fake, embeddings, args.users)

    floor = latency["no learning"]["p50"]
    print(
        f"Reply latency over {args.turns} turns, fake model {CHAT_LATENCY * 1000:.0f} ms "
        f"(chat) / {EXTRACT_LATENCY * 1000:.0f} ms (extraction):\n"
    )
    print("| setup | reply p50 (ms) | reply p99 (ms) | added vs no learning (p50) |")
    print("|---|---|---|---|")
    for mode, figures in latency.items():
        print(
            f"| {mode} | {figures['p50']:.1f} | {figures['p99']:.1f} | "
            f"{figures['p50'] - floor:+.1f} ms |"
        )
    recall = report["recall"]
    print(
        f"\nCross-thread recall@5: {recall['hits']}/{recall['cases']} = "
        f"{recall['recall_at_5']:.1%} ({FIXTURE.name}, local MiniLM embeddings)"
    )
    for miss in recall["misses"][:10]:
        print(f"  missed: {miss['question']!r} -> {miss['expected']!r}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
