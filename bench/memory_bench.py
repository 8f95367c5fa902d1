"""Memory learning: what it costs the reply. Only latency is measured here.

Memory *quality* (does the bot remember what people say?) is measured by
`bench/memory_quality.py`, on the default offline path a user gets. This bench measures
only what learning costs the reply, so its fake extractor (below) is a stand-in that gives
extraction a real write to do; nothing here says how well memories are learnt or recalled.

Offline: the "model" is the local fake Anthropic API (tests/fakes/llm.py) driven by the real
SDK, with a fixed latency per request; embeddings are the shipped local MiniLM model; the
store is the embedded Qdrant Edge default.

1. Reply latency, three setups on the same turns (each turn a new user and thread, so no
   turn waits on another's extraction):
   - `no learning`: the writer does nothing (the floor: chat model + recall + checkpoint);
   - `background` (membot's design): extraction after the reply, debounced;
   - `inline`: the guide's pattern, extraction inside the turn before the reply returns.
   "added vs no learning" = p50 - no-learning p50; for background the target is 0 ms.
2. A turn while another thread's extraction is pending (chat 200 ms, extraction 3 s,
   debounce 0 so extraction starts right after the reply): a user says a fact in thread A,
   then at once says "hello" in thread B, and the B reply is timed. It is counted as
   overlapping only if the user's learning was pending when the B turn started and still
   pending when it returned, with the extraction request already at the model. Baseline,
   same run: a fresh user's B turn after their thread-A learning finished
   (`flush_memories()`). Target: p99 with pending extraction <= 1.1 x without.

Run: `.venv/bin/python bench/memory_bench.py [--turns N] [--repeats N] [--json out.json]`.
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

from bench.report import header, table, target, write_json
from engine.bot import MemoryBot
from engine.embeddings.local import LocalEmbeddings
from engine.memory.manager import MEMORY_TOOL
from engine.memory.writer import Batch, DebouncedWriter
from tests.fakes.llm import FakeLLM, ToolUse
from tests.llm_settings import fake_llm_settings

CHAT_LATENCY = 0.2
EXTRACT_LATENCY = 0.3
PENDING_EXTRACT_LATENCY = 3.0
PENDING_TARGET = 1.1  # p99 with a pending extraction <= 1.1 x without


def fake_model(body: dict[str, Any]) -> str | ToolUse:
    """Chat: a fixed answer. Extraction: ADD every user message as said (a stand-in that
    gives extraction a write to do; not a quality claim, see bench/memory_quality.py)."""
    if not body.get("tools"):
        return "Noted."
    payload = json.loads(body["messages"][0]["content"])
    said = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
    return ToolUse(MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": t} for t in said]})


settings = fake_llm_settings
Embeddings = tuple[LocalEmbeddings, int]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": statistics.median(values), "p99": percentile(values, 0.99)}


async def _nothing(batch: Batch) -> None:
    return None


async def reply_latency(
    fake: FakeLLM, embeddings: Embeddings, mode: str, turns: int
) -> list[float]:
    fake.delay = lambda body: EXTRACT_LATENCY if body.get("tools") else CHAT_LATENCY
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


def _extraction_sent(fake: FakeLLM, marker: str) -> bool:
    """Whether the model has received an extraction request carrying `marker`."""
    return any(marker in body["messages"][0]["content"] for body in fake.tool_requests())


async def pending_turns(fake: FakeLLM, embeddings: Embeddings, repeats: int) -> dict[str, Any]:
    """B-turn latency with the user's thread-A extraction in flight, and without."""
    fake.delay = lambda body: PENDING_EXTRACT_LATENCY if body.get("tools") else CHAT_LATENCY
    pending: list[float] = []
    idle: list[float] = []
    at_start = overlapped = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with MemoryBot.open(
            settings(fake, Path(tmp), memory_debounce_seconds=0), embeddings=embeddings
        ) as bot:
            for n in range(repeats):
                # Baseline: a fresh user whose thread-A learning is done before the B turn.
                # (The flush also waits for the previous repetition's extraction.)
                user = f"idle{n}"
                await bot.chat(
                    user_id=user, thread_id=f"{user}:A", text=f"My dog is called Rex{n}."
                )
                await bot.flush_memories()
                assert not bot.writer.pending(), "baseline turn must have nothing pending"
                started = time.perf_counter()
                await bot.chat(user_id=user, thread_id=f"{user}:B", text="hello")
                idle.append((time.perf_counter() - started) * 1000)

                # The same, with no wait: the B turn runs while thread A's extraction does.
                user = f"busy{n}"
                fact = f"My cat is called Tom{n}."
                await bot.chat(user_id=user, thread_id=f"{user}:A", text=fact)
                before = bool(bot.writer.pending(user))
                started = time.perf_counter()
                await bot.chat(user_id=user, thread_id=f"{user}:B", text="hello")
                pending.append((time.perf_counter() - started) * 1000)
                after = bool(bot.writer.pending(user))
                at_start += before
                overlapped += before and after and _extraction_sent(fake, fact)
            await bot.flush_memories()
    return {
        "repeats": repeats,
        "extraction_latency_ms": PENDING_EXTRACT_LATENCY * 1000,
        "pending_at_start": at_start,
        "overlapped": overlapped,
        "with_pending_ms": summary(pending) | {"values": pending},
        "without_pending_ms": summary(idle) | {"values": idle},
    }


async def run(turns: int, repeats: int) -> dict[str, Any]:
    embedder = LocalEmbeddings()
    embedder.embed_query("warm up")
    embeddings = (embedder, embedder.dims)
    report: dict[str, Any] = {
        "chat_latency_ms": CHAT_LATENCY * 1000,
        "extraction_latency_ms": EXTRACT_LATENCY * 1000,
        "turns": turns,
    }
    async with FakeLLM(fake_model) as fake:
        report["latency_ms"] = {
            mode: summary(await reply_latency(fake, embeddings, mode, turns))
            for mode in ("no learning", "background", "inline")
        }
        report["pending"] = await pending_turns(fake, embeddings, repeats)
    return report


def render(report: dict[str, Any]) -> str:
    latency = report["latency_ms"]
    floor = latency["no learning"]["p50"]
    rows = [
        [mode, f["p50"], f["p99"], None if mode == "no learning" else f"{f['p50'] - floor:+.1f} ms"]
        for mode, f in latency.items()
    ]
    pending = report["pending"]
    busy, idle = pending["with_pending_ms"], pending["without_pending_ms"]
    p99_ratio = busy["p99"] / idle["p99"]
    pending["p99_ratio"] = p99_ratio
    line, met = target(
        "B-turn p99 with pending extraction / without",
        p99_ratio,
        PENDING_TARGET,
        at_least=False,
    )
    pending["target_met"] = met
    return "\n".join(
        [
            f"Reply latency over {report['turns']} turns, fake model "
            f"{report['chat_latency_ms']:.0f} ms (chat) / "
            f"{report['extraction_latency_ms']:.0f} ms (extraction):",
            "",
            table(
                ["setup", "reply p50 (ms)", "reply p99 (ms)", "added vs no learning (p50)"], rows
            ),
            "",
            f"A turn while another thread's extraction is pending, {pending['repeats']} "
            f"repetitions, fake model {report['chat_latency_ms']:.0f} ms (chat) / "
            f"{pending['extraction_latency_ms']:.0f} ms (extraction), debounce 0:",
            "",
            table(
                ["thread-B turn", "n", "reply p50 (ms)", "reply p99 (ms)"],
                [
                    ["extraction pending (thread A)", busy["n"], busy["p50"], busy["p99"]],
                    ["nothing pending (baseline)", idle["n"], idle["p50"], idle["p99"]],
                ],
            ),
            "",
            f"Overlap verified: {pending['overlapped']}/{pending['repeats']} B turns ran with "
            f"the user's extraction at the model from start to end "
            f"(pending at start: {pending['pending_at_start']}/{pending['repeats']}).",
            f"p50 ratio {busy['p50'] / idle['p50']:.3f}, p99 ratio {p99_ratio:.3f}.",
            line,
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=40, help="turns per latency setup")
    parser.add_argument(
        "--repeats", type=int, default=20, help="B turns with / without pending extraction"
    )
    parser.add_argument("--json", type=Path, help="also write all figures here")
    args = parser.parse_args()
    report = asyncio.run(run(args.turns, args.repeats))
    text = render(report)
    print(header("Memory learning: what it costs the reply (offline, fake model)"))
    print(text)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
