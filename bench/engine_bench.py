"""MemoryBot's own cost per chat turn, against the seed setup, at 1k to 1M stored memories.

What is measured, for each size (default 1k, 100k and 1M memories of 1,000 users, one
namespace `("memories", f"user-{i}")` each, 384-dim vectors), in two setups on identical
turns:

- membot: the embedded defaults, `MemoryBot.open(settings, model=..., embeddings=...)`:
  `EdgeStore` on disk and `SqliteSaver (1 thread)` on disk, both in a temp dir;
- baseline (the seed setup): LangGraph's `InMemoryStore` (same embedder, same index
  config) + `InMemorySaver`, as `MemoryBot(settings=..., store=..., checkpointer=...)`.

Figures:
- engine overhead per turn = `MemoryBot.chat` end to end minus the fake chat model's and
  the embedder's own time (both time themselves, so they are subtracted exactly): p50/p99;
- background learning per turn: it runs after the reply, so it is NOT in the turn as the
  user sees it. Here the writer's debounce is set far out and the bench flushes it after
  every turn, timing that separately (memory search + fake tool call + memory write +
  compaction check), again minus the fake model's and embedder's time;
- 1,000 conversations at once with a fake LLM of 500 ms: all answered? wall time against
  1.2 x 500 ms, and against 500 ms + the turns' engine time if it ran one after another
  (one event loop does every turn's Python work);
- RSS of the process after the preload and at the end (one subprocess per setup and size,
  so figures do not leak from one run into another);
- with `--profile`, at the largest size: steady-state turns sampled by py-spy (if it is
  installed; not a project dependency), every thread, idle included, so a turn's wall
  time splits into the event loop's work by category, other threads' work it waited for
  (SQLite, Edge engine, embedder) and waiting on nobody (thread wake-ups); then the
  checkpointer's and the store's calls timed per turn; then ablations on the same store
  (another checkpointer, `durability="exit"`, SQLite `synchronous=NORMAL`, Edge calls
  on the loop), each against a control run. `--profile-dir` keeps py-spy's raw stacks.

The chat model is an in-process fake (`FakeChat`: a fixed reply after a fixed sleep, 0 by
default; its tool call ADDs every user statement as a memory, like bench/memory_bench.py's
fake extractor), and the embedder is deterministic (`SeededEmbeddings`: a seeded random
unit vector per text, hashed). Preloading goes through `store.batch` in chunks of PutOps,
with vectors precomputed in bulk and handed over by the embedder's lookup (as in
bench/store_bench.py). The baseline at a size whose InMemoryStore would not fit in half of
the available memory (~16 KB per item: Python float lists) is skipped, and says so.

Run: `.venv/bin/python bench/engine_bench.py [--sizes 1000,100000,1000000] [--quick]
[--profile [--profile-dir DIR]] [--baseline-max-items N] [--json out.json]`; the full run
with the 1M baseline (~16 GB RSS) was `--profile --baseline-max-items 1000000`, ~9 min.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import json
import linecache
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # engine, from a checkout

from langchain_core.embeddings import Embeddings  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk  # noqa: E402
from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.store.base import BaseStore, PutOp  # noqa: E402
from langgraph.store.memory import InMemoryStore  # noqa: E402
from langgraph.store.qdrant._plans import Call  # noqa: E402

from engine.bot import MemoryBot  # noqa: E402
from engine.models import Prompt, Tool  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.store import EdgeStore  # noqa: E402
from engine.store.factory import index_config  # noqa: E402

DIMS = 384
CHUNK = 500
SEED = 20_251_126
USERS = 1_000
THREADS = 100  # conversations the measured turns rotate over (each one user's)
WARMUP_TURNS = 200
TURNS = 1_000
CONCURRENT = 1_000
CONCURRENT_LATENCY = 0.5
PROFILE_TURNS = 600
ABLATION_TURNS = 400
DEBOUNCE = 3_600.0  # the bench flushes the writer itself, see the docstring
TARGET_ITEMS = 1_000_000
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
TARGET_RATIO = 1.5
TARGET_WALL_FACTOR = 1.2
BASELINE_BYTES_PER_ITEM = 16_000  # InMemoryStore RSS per item (384 Python floats), measured
REPLY = (
    "Thanks, noted. Based on what you told me earlier I would start with the smaller "
    "option, then check the numbers again next week and adjust if anything changed."
)

Sample = dict[str, int]  # nanoseconds by part of one turn


# -- fakes ------------------------------------------------------------------------------------


class Stopwatch:
    """Thread-safe accumulated nanoseconds and calls (the embedder runs in executors)."""

    def __init__(self) -> None:
        self.ns = 0
        self.calls = 0
        self._lock = threading.Lock()

    def add(self, ns: int) -> None:
        with self._lock:
            self.ns += ns
            self.calls += 1


class SeededEmbeddings(Embeddings):
    """Deterministic 384-dim unit vectors: seeded by a hash of the text, so the same text
    always gets the same vector. `preset` holds vectors computed in bulk for a preload;
    a text found there is handed over (and forgotten) instead of computed. Every call
    times itself into `watch`. Its async methods are LangChain's defaults (the sync call
    in an executor), like the shipped `LocalEmbeddings`."""

    def __init__(self) -> None:
        self.preset: dict[str, list[float]] = {}
        self.watch = Stopwatch()

    @staticmethod
    def vector(text: str) -> list[float]:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
        v = np.random.default_rng(seed).standard_normal(DIMS, dtype=np.float32)
        return (v / np.linalg.norm(v)).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        start = time.perf_counter_ns()
        preset = self.preset
        out = [preset.pop(t, None) or self.vector(t) for t in texts]
        self.watch.add(time.perf_counter_ns() - start)
        return out

    def embed_query(self, text: str) -> list[float]:
        start = time.perf_counter_ns()
        out = self.vector(text)
        self.watch.add(time.perf_counter_ns() - start)
        return out


class FakeChat:
    """`engine.models.ChatModel` (and `ToolCallingModel`) in-process: a fixed reply after
    `delay` seconds (no sleep at all when 0). Times itself: `chat` for answers, `tool`
    for memory extraction, which ADDs every user message that is not a question."""

    name = "fake:bench"
    offline = False
    provider = "fake"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.chat = Stopwatch()
        self.tool = Stopwatch()

    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        start = time.perf_counter_ns()
        if self.delay:
            await asyncio.sleep(self.delay)
        reply = AIMessage(content=REPLY, response_metadata={"model": self.name, "offline": False})
        self.chat.add(time.perf_counter_ns() - start)
        return reply

    async def astream(self, prompt: Prompt) -> AsyncIterator[AIMessageChunk]:
        """The reply word by word, as a model streams it (the engine's own cost per piece
        is part of the overhead); the time spent in here is the model's."""
        start = time.perf_counter_ns()
        if self.delay:
            await asyncio.sleep(self.delay)
        pieces = re.findall(r"\s*\S+", REPLY)
        self.chat.add(time.perf_counter_ns() - start)
        for piece in pieces:
            yield AIMessageChunk(content=piece)

    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        start = time.perf_counter_ns()
        if self.delay:
            await asyncio.sleep(self.delay)
        payload = json.loads(str(prompt.messages[0].content))
        said = [m["text"] for m in payload.get("new_messages", []) if m["from"] == "user"]
        ops = [{"action": "ADD", "text": t} for t in said if not t.rstrip().endswith("?")]
        self.tool.add(time.perf_counter_ns() - start)
        return {"operations": ops}

    async def aclose(self) -> None:
        return None


# -- workload ---------------------------------------------------------------------------------

PLACES = ["Lisbon", "Oslo", "Kyoto", "Quito", "Accra", "Perth", "Lyon", "Tartu"]
THINGS = ["bike", "sourdough starter", "standing desk", "kayak", "piano", "espresso machine"]


def memory_text(i: int, user: int) -> str:
    return f"I (user {user}) noted fact number {i}: my {THINGS[i % 6]} is in {PLACES[i % 8]}."


def turn_text(n: int, user: int) -> str:
    """Alternating statements (learnt as memories) and questions (not)."""
    place, thing = PLACES[(n + user) % 8], THINGS[(n * 7 + user) % 6]
    if n % 2 == 0:
        return f"By the way, I moved my {thing} to {place} last week, turn {n}."
    return f"Where did I say my {thing} is now, and what should I do with it in {place}?"


def memory_value(text: str, user: int) -> dict[str, Any]:
    stamp = "2026-01-01T00:00:00.000+00:00"
    return {
        "text": text,
        "kind": "fact",
        "source_thread": f"thread-{user}",
        "created_at": stamp,
        "updated_at": stamp,
    }


def preload(store: BaseStore, emb: SeededEmbeddings, items: int, users: int) -> float:
    """`items` memories, item i to user i % users, in `batch` chunks; returns seconds."""
    rng = np.random.default_rng(SEED)
    started = time.perf_counter()
    step = max(items // 10, CHUNK)
    for lo in range(0, items, CHUNK):
        ops, texts = [], []
        for i in range(lo, min(lo + CHUNK, items)):
            user = i % users
            text = memory_text(i, user)
            texts.append(text)
            ops.append(
                PutOp(("memories", f"user-{user}"), f"m{i // users}", memory_value(text, user))
            )
        mat = rng.standard_normal((len(texts), DIMS), dtype=np.float32)
        mat /= np.linalg.norm(mat, axis=1, keepdims=True)
        emb.preset.update(zip(texts, mat.tolist(), strict=True))
        store.batch(ops)
        if (lo + CHUNK) % step < CHUNK:
            log(f"    preloaded {min(lo + CHUNK, items):,}/{items:,}")
    emb.preset.clear()
    return time.perf_counter() - started


@dataclass
class Turn:
    user: int
    thread: str
    text: str


def turn_plan(
    users: int, threads: int, warmup: int, turns: int, prefix: str = "thread"
) -> tuple[list[Turn], list[Turn]]:
    pick = random.Random(SEED)
    active = pick.sample(range(users), min(threads, users))
    count: Counter[int] = Counter()
    plan = []
    for n in range(warmup + turns):
        # Every conversation gets its first turns in the warm-up, then random ones.
        user = active[n % len(active)] if n < len(active) else pick.choice(active)
        plan.append(Turn(user, f"{prefix}-{user}", turn_text(count[user], user)))
        count[user] += 1
    return plan[:warmup], plan[warmup:]


# -- measurement ------------------------------------------------------------------------------


def rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def stats(ns: Sequence[int]) -> dict[str, float]:
    if not len(ns):
        return {"p50_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "max_ms": 0.0, "n": 0}
    ms = np.asarray(ns, dtype=np.float64) / 1e6
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
        "n": len(ms),
    }


class Meter:
    """Runs turns one after another and splits each into its parts."""

    def __init__(self, bot: MemoryBot, emb: SeededEmbeddings, model: FakeChat) -> None:
        self.bot, self.emb, self.model = bot, emb, model

    def _marks(self) -> tuple[int, int, int]:
        return self.emb.watch.ns, self.model.chat.ns, self.model.tool.ns

    async def turn(self, turn: Turn) -> Sample:
        e0, c0, t0 = self._marks()
        start = time.perf_counter_ns()
        reply = await self.bot.chat(
            user_id=f"user-{turn.user}", thread_id=turn.thread, text=turn.text
        )
        end = time.perf_counter_ns()
        if reply.error or reply.text != REPLY:
            raise RuntimeError(f"unexpected reply: {reply!r}")
        e1, c1, t1 = self._marks()
        await self.bot.flush_memories()  # the background learning of this turn, timed apart
        done = time.perf_counter_ns()
        e2, c2, t2 = self._marks()
        return {
            "turn": end - start,
            "turn_embed": e1 - e0,
            "turn_llm": c1 - c0 + t1 - t0,
            "learn": done - end,
            "learn_embed": e2 - e1,
            "learn_llm": c2 - c1 + t2 - t1,
        }

    async def run(self, turns: Sequence[Turn]) -> list[Sample]:
        return [await self.turn(t) for t in turns]


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    overhead = [s["turn"] - s["turn_embed"] - s["turn_llm"] for s in samples]
    learn = [s["learn"] - s["learn_embed"] - s["learn_llm"] for s in samples]
    n = max(len(samples), 1)
    return {
        "overhead": stats(overhead),
        "turn": stats([s["turn"] for s in samples]),
        "fakes_per_turn_ms": sum(s["turn_embed"] + s["turn_llm"] for s in samples) / n / 1e6,
        "learn_overhead": stats(learn),
        "learn_fakes_per_turn_ms": sum(s["learn_embed"] + s["learn_llm"] for s in samples)
        / n
        / 1e6,
    }


async def burst(bot: MemoryBot, model: FakeChat, n: int, users: int) -> dict[str, Any]:
    """`n` new conversations at once, the model answering each after CONCURRENT_LATENCY."""
    model.delay = CONCURRENT_LATENCY
    done: list[int] = []

    async def one(j: int) -> bool:
        start = time.perf_counter_ns()
        reply = await bot.chat(
            user_id=f"user-{j % users}",
            thread_id=f"burst-{j}",
            text=f"Hi, I'm planning a trip to {PLACES[j % 8]} with my {THINGS[j % 6]}, {j}.",
        )
        done.append(time.perf_counter_ns() - start)
        return not reply.error and reply.text == REPLY

    gc.collect()
    cpu0 = time.process_time()
    started = time.perf_counter()
    answered = sum(await asyncio.gather(*(one(j) for j in range(n))))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    model.delay = 0.0
    drain0 = time.perf_counter()
    await bot.flush_memories()
    drain = time.perf_counter() - drain0
    return {
        "conversations": n,
        "answered": answered,
        "wall_s": wall,
        "cpu_s": cpu,
        "latency": stats(done),
        "learn_drain_s": drain,
    }


# -- worker: one setup at one size, in its own process ----------------------------------------


def bench_settings(data_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        qdrant_url=None,
        checkpoint_url=None,
        memory_ttl_days=None,
        memory_debounce_seconds=DEBOUNCE,
    )


async def worker(spec: dict[str, Any]) -> dict[str, Any]:
    emb, model = SeededEmbeddings(), FakeChat()
    items, users = spec["items"], spec["users"]
    warmup, measured = turn_plan(users, spec["threads"], spec["warmup"], spec["turns"])
    out: dict[str, Any] = {"setup": spec["setup"], "items": items, "users": users}
    with tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        settings = bench_settings(Path(tmp))
        out["settings"] = {
            k: getattr(settings, k)
            for k in ("memory_top_k", "history_messages", "context_token_budget")
        }
        async with contextlib.AsyncExitStack() as stack:
            rss0 = rss_mb()
            if spec["setup"] == "edge":
                bot = await stack.enter_async_context(
                    MemoryBot.open(settings, model=model, embeddings=(emb, DIMS))
                )
            else:
                store = InMemoryStore(index=index_config(emb, DIMS))  # type: ignore[arg-type]
                bot = MemoryBot(
                    settings=settings, store=store, checkpointer=InMemorySaver(), model=model
                )
                stack.push_async_callback(bot.writer.aclose)
            out["store"] = type(bot.store).__name__
            out["checkpointer"] = type(bot.checkpointer).__name__
            log(f"  [{spec['setup']} {items:,}] {out['store']} + {out['checkpointer']}, preload")
            load_s = preload(bot.store, emb, items, users)
            gc.collect()
            gc.freeze()  # the preloaded heap is old: keep the collector off it, for both
            out["preload"] = {"seconds": load_s, "items_per_s": items / load_s if load_s else 0}
            out["rss_before_mb"], out["rss_loaded_mb"] = rss0, rss_mb()
            meter = Meter(bot, emb, model)
            log(f"  [{spec['setup']} {items:,}] {len(warmup)} warm-up + {len(measured)} turns")
            await meter.run(warmup)
            gc.collect()
            out["turns"] = summarize(await meter.run(measured))
            if spec.get("profile"):  # before the burst: its 1,000 threads would linger
                out["profile"] = await profile(bot, emb, model, settings, users, spec)
            if spec["concurrent"]:
                log(f"  [{spec['setup']} {items:,}] {spec['concurrent']:,} conversations at once")
                out["burst"] = await burst(bot, model, spec["concurrent"], users)
            out["rss_end_mb"], out["rss_peak_mb"] = rss_mb(), peak_rss_mb()
            if spec["setup"] == "edge":
                out["disk_mb"] = dir_mb(Path(tmp))
        gc.unfreeze()
    return out


# -- profile: what the overhead is made of ----------------------------------------------------


class Spans:
    """Wall time inside the checkpointer's and the store's calls, by wrapping the bound
    methods of the live objects (instance attributes; the classes are untouched)."""

    def __init__(self) -> None:
        self.ns: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, obj: Any, method: str, label: str) -> None:
        inner = getattr(obj, method)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return await inner(*args, **kwargs)
            finally:
                self.ns[label] += time.perf_counter_ns() - start
                self.calls[label] += 1

        setattr(obj, method, timed)

    def unwrap(self, obj: Any, method: str) -> None:
        with contextlib.suppress(AttributeError):
            delattr(obj, method)


async def timed_spans(
    bot: MemoryBot, emb: SeededEmbeddings, model: FakeChat, turns: Sequence[Turn]
) -> dict[str, Any]:
    """Per-turn wall time inside each instrumented call, for the turn alone: spans are
    switched on for `bot.chat` and off for the flush that follows it."""
    spans = Spans()
    methods = [
        (bot.checkpointer, "aget_tuple", "checkpointer: read (aget_tuple)"),
        (bot.checkpointer, "aput", "checkpointer: write checkpoint (aput)"),
        (bot.checkpointer, "aput_writes", "checkpointer: write task results (aput_writes)"),
        (bot.store, "abatch", "store: recall search (abatch)"),
    ]
    total = embed = llm = 0
    marks = lambda: (emb.watch.ns, model.chat.ns)  # noqa: E731
    for t in turns:
        for obj, method, label in methods:
            spans.wrap(obj, method, label)
        e0, c0 = marks()
        start = time.perf_counter_ns()
        await bot.chat(user_id=f"user-{t.user}", thread_id=t.thread, text=t.text)
        total += time.perf_counter_ns() - start
        e1, c1 = marks()
        embed, llm = embed + e1 - e0, llm + c1 - c0
        for obj, method, _ in methods:
            spans.unwrap(obj, method)
        await bot.flush_memories()
    n = len(turns)
    return {
        "turn_ms": total / n / 1e6,
        "embedder_ms": embed / n / 1e6,
        "fake_llm_ms": llm / n / 1e6,
        "spans_ms": {k: v / n / 1e6 for k, v in spans.ns.items()},
        "calls_per_turn": {k: v / n for k, v in spans.calls.items()},
    }


class Durability:
    """`bot.workflow` invoked with a given `durability` (ablation only)."""

    def __init__(self, workflow: Any, mode: str) -> None:
        self._workflow, self._mode = workflow, mode

    async def ainvoke(self, *args: Any, **kwargs: Any) -> Any:
        return await self._workflow.ainvoke(*args, durability=self._mode, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workflow, name)


@contextlib.contextmanager
def inline_engine_calls(store: Any) -> Any:
    """EdgeStore with its engine calls run on the event loop instead of its thread pool
    (embedding still in the executor); ablation only, on the live instance."""
    original = store._aexecute

    async def execute(request: Any) -> Any:
        if isinstance(request, Call):
            return getattr(store.client, request.method)(*request.args, **request.kwargs)
        return await original(request)

    store._aexecute = execute
    try:
        yield
    finally:
        del store._aexecute


async def ablation(
    name: str,
    bot: MemoryBot,
    emb: SeededEmbeddings,
    model: FakeChat,
    users: int,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """The conversations start afresh (warm-up, then measured turns), so every variant
    starts alike. Their thread ids are the main run's, forgotten first: new ids would pile
    up in the writer, whose entries outlive the bench's long debounce."""
    warmup, turns = turn_plan(users, spec["threads"], spec["threads"] * 2, ABLATION_TURNS)
    for thread in {t.thread for t in warmup}:
        await bot.forget_thread(thread)
    meter = Meter(bot, emb, model)
    await meter.run(warmup)
    summary = summarize(await meter.run(turns))
    log(f"    ablation {name}: overhead p50 {summary['overhead']['p50_ms']:.2f} ms")
    return {"name": name, **summary}


async def ablations(
    bot: MemoryBot,
    emb: SeededEmbeddings,
    model: FakeChat,
    settings: Settings,
    users: int,
    spec: dict[str, Any],
) -> list[dict[str, Any]]:
    """One change at a time on the same store, each against a control run just before."""
    out = [await ablation("control: default, again", bot, emb, model, users, spec)]
    memory_bot = MemoryBot(
        settings=settings, store=bot.store, checkpointer=InMemorySaver(), model=model
    )
    try:
        out.append(
            await ablation("checkpointer InMemorySaver", memory_bot, emb, model, users, spec)
        )
        if isinstance(bot.store, EdgeStore):
            with inline_engine_calls(bot.store):
                out.append(
                    await ablation(
                        "InMemorySaver + Edge calls inline", memory_bot, emb, model, users, spec
                    )
                )
    finally:
        await memory_bot.writer.aclose()
    # durability="exit" is the default now (MemoryBot.chat), so it is no longer an ablation.
    if isinstance(bot.store, EdgeStore):
        with inline_engine_calls(bot.store):
            out.append(await ablation("Edge calls inline", bot, emb, model, users, spec))
    return out


async def profile(
    bot: MemoryBot,
    emb: SeededEmbeddings,
    model: FakeChat,
    settings: Settings,
    users: int,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """Steady state at this size: py-spy profile of the turns, then of their background
    learning; per-turn spans; ablations on the same store."""
    _, turns = turn_plan(users, spec["threads"], 0, PROFILE_TURNS + ABLATION_TURNS)
    first, rest = turns[:PROFILE_TURNS], turns[PROFILE_TURNS:]
    result: dict[str, Any] = {}
    spy = pyspy_path()
    if spy is None:
        result["pyspy"] = "py-spy not found (pip install py-spy into the venv); skipped"
    else:
        log("    profiling the turns with py-spy")
        with PySpy(spy) as turns_prof:
            for t in first:
                await bot.chat(user_id=f"user-{t.user}", thread_id=t.thread, text=t.text)
        log("    profiling their background learning with py-spy")
        with PySpy(spy) as learn_prof:
            await bot.flush_memories()
        keep = Path(spec["profile_dir"]) if spec.get("profile_dir") else None
        items = spec["items"]
        result["pyspy_turns"] = turns_prof.report(
            len(first), keep and keep / f"pyspy-turns-{items}.txt"
        )
        result["pyspy_learn"] = learn_prof.report(
            len(first), keep and keep / f"pyspy-learning-{items}.txt"
        )
    log("    timing spans per turn")
    result["spans"] = await timed_spans(bot, emb, model, rest)
    result["ablations"] = await ablations(bot, emb, model, settings, users, spec)
    return result


def pyspy_path() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class PySpy:
    """py-spy sampling this very process (raw collapsed stacks, all threads, idle included),
    started and stopped around a block."""

    RATE = 250

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.out = Path(tempfile.mkstemp(prefix="engine-bench-", suffix=".txt")[1])
        self.seconds = 0.0

    def __enter__(self) -> PySpy:
        # Its messages go to a file: a pipe left unread fills up and py-spy then blocks
        # with this process stopped.
        self.log = Path(f"{self.out}.log")
        with self.log.open("w") as log_file:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--rate",
                    str(self.RATE),
                    "--nonblocking",
                    "--full-filenames",
                    "--idle",
                    "--threads",
                    "--format",
                    "raw",
                    "--output",
                    str(self.out),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while "Sampling" not in self.log.read_text() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"py-spy failed: {self.log.read_text()[-500:]}")
            time.sleep(0.05)
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=120)
        self.log.unlink(missing_ok=True)

    def report(self, turns: int, keep: Path | None = None) -> dict[str, Any]:
        """Samples by category; the raw stacks are moved to `keep` (for flame graphs)."""
        try:
            return categorize(self.out.read_text(), turns, self.RATE, self.seconds)
        finally:
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(self.out, keep)
            self.out.unlink(missing_ok=True)


# What a sample is spent on: its innermost frame that is not "transparent" (stdlib and
# asyncio plumbing, which count for whoever called them) decides, by the first rule whose
# substring is in it. Paths are full (py-spy --full-filenames).
RULES: list[tuple[str, tuple[str, ...]]] = [
    ("fake LLM + embedder (subtracted)", ("FakeChat.", "SeededEmbeddings.", "Stopwatch.")),
    ("aiosqlite: queueing calls, results back", ("/aiosqlite/",)),
    ("checkpoint serialisation (serde, msgpack)", ("/langgraph/checkpoint/serde/", "ormsgpack")),
    ("checkpointer Python (SqliteSaver (1 thread), InMemorySaver)", ("/langgraph/checkpoint/",)),
    ("store: Qdrant Edge engine (Rust)", ("/engine/store/edge_client.py",)),
    ("store: request/response conversion", ("/engine/store/edge_models.py",)),
    ("store: qdrant-client models (pydantic)", ("/qdrant_client/",)),
    ("store: plans, filters, payloads (langgraph-store-qdrant)", ("/langgraph/store/qdrant/",)),
    ("store: EdgeStore executor", ("/engine/store/edge.py",)),
    ("store: InMemoryStore", ("/langgraph/store/",)),
    ("prompt: trim_messages / token counting", ("/langchain_core/messages/utils",)),
    ("messages (langchain_core)", ("/langchain_core/messages/", "/langgraph/graph/message")),
    ("LangGraph runtime (Pregel loop, tasks, channels)", ("/langgraph/",)),
    ("langchain_core runnables, config, callbacks", ("/langchain_core/",)),
    ("pydantic", ("/pydantic",)),
    ("engine: bot, writer, locks, metrics, prompt", ("/engine/", "/prometheus_client/")),
]
SQLITE = "SQLite: statements, commit, fsync (in C)"
PLUMBING = "asyncio and executors: the loop itself, thread hand-offs"
IDLE = "idle: waiting (for another thread, I/O or a timer)"
OTHER = "other (stdlib, C extensions)"
# Frames that count for their caller: the stdlib's plumbing.
TRANSPARENT = (
    "/asyncio/",
    "/concurrent/futures/",
    "/threading.py",
    "/queue.py",
    "/selectors.py",
    "/contextlib.py",
    "/contextvars",
    "/json/",
    "/uuid.py",
    "/inspect.py",
    "/dataclasses.py",
    "/copy.py",
    "/typing.py",
    "/functools.py",
    "/weakref.py",
    "/_weakrefset.py",
    "/logging/",
    "/enum.py",
    "/abc.py",
)
# Leaf frames in which a thread waits rather than works: (function, file, text of the line).
IDLE_LEAVES: list[tuple[str, str, str]] = [
    ("select", "/selectors.py", ""),
    ("_worker", "/concurrent/futures/thread.py", ".get("),
    ("_connection_worker_thread", "/aiosqlite/core.py", ".get("),
    ("get", "/queue.py", ""),
    ("wait", "/threading.py", ""),
]
THREAD_ROLES = [
    ("MainThread", "event loop (the turn's critical path)"),
    ("_connection_worker_thread", "aiosqlite thread (checkpointer)"),
    ("edge-store", "EdgeStore pool threads"),
    ("asyncio_", "default executor (embedder)"),
]


def _split(frame: str) -> tuple[str, str, int]:
    """ "function (path:line)" -> (function, path, line)."""
    func, _, where = frame.partition(" (")
    path, _, line = where.rstrip(")").rpartition(":")
    return func, path, int(line) if line.isdigit() else 0


def _line(path: str, line: int) -> str:
    return linecache.getline(path, line) if line else ""


def is_idle(leaf: str) -> bool:
    func, path, line = _split(leaf)
    return any(
        func.rsplit(".", 1)[-1] == name
        and path.endswith(file)
        and (not text or text in _line(path, line))
        for name, file, text in IDLE_LEAVES
    )


def label_of(frames: Sequence[str]) -> str:
    _, path, line = _split(frames[-1])
    if path.endswith("/aiosqlite/core.py") and "function()" in _line(path, line):
        return SQLITE
    for frame in reversed(frames):
        label = next((name for name, keys in RULES if any(k in frame for k in keys)), None)
        if label is not None:
            return label
        if any(t in frame for t in TRANSPARENT) or "/bench/engine_bench.py" in frame:
            continue  # plumbing, or the bench's own frames around the event loop
        return OTHER
    return PLUMBING


def categorize(raw: str, turns: int, rate: int, seconds: float) -> dict[str, Any]:
    """py-spy's raw stacks (idle included, one line per distinct stack: "thread (tid):
    name;frame;...;frame count") as milliseconds per turn, by thread role and category."""
    by_role: dict[str, Counter[str]] = defaultdict(Counter)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        thread, *frames = stack.split(";")
        if any("PySpy." in f for f in frames):
            continue  # the bench waiting for py-spy to start, outside the timed window
        role = next((r for key, r in THREAD_ROLES if key in thread), "other threads")
        label = IDLE if not frames or is_idle(frames[-1]) else label_of(frames)
        by_role[role][label] += int(count)
    per_turn = 1000 / rate / max(turns, 1)
    busy: Counter[str] = Counter()
    for counts in by_role.values():
        busy.update({k: v for k, v in counts.items() if k != IDLE})
    total_busy = sum(busy.values()) or 1
    return {
        "seconds": seconds,
        "turns": turns,
        "wall_ms_per_turn": seconds * 1000 / max(turns, 1),
        "rate_hz": rate,
        "busy_samples": sum(busy.values()),
        "busy": [
            {"label": k, "share": v / total_busy, "ms_per_turn": v * per_turn}
            for k, v in busy.most_common()
        ],
        "threads": {
            role: [{"label": k, "ms_per_turn": v * per_turn} for k, v in counts.most_common()]
            for role, counts in sorted(by_role.items())
        },
    }


# -- parent: run the workers, report ----------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def mem_available_mb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("inf")


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="engine-bench-", suffix=".json") as out:
        subprocess.run(
            [sys.executable, __file__, "--worker", json.dumps(spec), "--json", out.name],
            check=True,
            cwd=ROOT,
        )
        return json.loads(Path(out.name).read_text())


def command_line() -> str:
    prefix = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return prefix + shlex.join([sys.executable, *sys.argv])


def ratio(membot: float, base: float | None) -> str:
    return f"{membot / base:.2f}×" if base else "—"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ms(value: float) -> str:
    return f"{value:.3f}"


@dataclass
class Pair:
    items: int
    edge: dict[str, Any]
    base: dict[str, Any] | None
    skipped: str = ""


def table(pairs: Sequence[Pair]) -> str:
    lines = [
        "| memories | figure | membot (EdgeStore + SqliteSaver (1 thread)) | "
        "baseline (InMemoryStore + InMemorySaver) | membot / baseline | target |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for pair in pairs:
        e, b = pair.edge, pair.base
        et, bt = e["turns"], b["turns"] if b else None
        rows: list[tuple[str, str, str, str, str]] = []

        def add(
            label: str,
            ev: float | str,
            bv: float | str | None,
            r: str = "",
            t: str = "",
            rows: list[tuple[str, str, str, str, str]] = rows,
        ) -> None:
            fmt = lambda v: ms(v) if isinstance(v, float) else str(v)  # noqa: E731
            rows.append((label, fmt(ev), "—" if bv is None else fmt(bv), r, t))

        at_target = pair.items == TARGET_ITEMS
        for stat, goal in (("p50_ms", TARGET_P50_MS), ("p99_ms", TARGET_P99_MS)):
            ev = et["overhead"][stat]
            bv = bt["overhead"][stat] if bt else None
            goal_text = f"≤ {goal:g} ms" + (f": {verdict(ev <= goal)}" if at_target else "")
            rtext = ratio(ev, bv)
            if bv:
                goal_text += f"; ≤ {TARGET_RATIO:g}× baseline: {verdict(ev <= TARGET_RATIO * bv)}"
            add(f"turn overhead {stat[:3]} (ms)", ev, bv, rtext, goal_text)
        add(
            "turn overhead mean (ms)",
            et["overhead"]["mean_ms"],
            bt["overhead"]["mean_ms"] if bt else None,
            ratio(et["overhead"]["mean_ms"], bt["overhead"]["mean_ms"] if bt else None),
        )
        add(
            "turn end to end p50 (ms), incl. fakes",
            et["turn"]["p50_ms"],
            bt["turn"]["p50_ms"] if bt else None,
        )
        add(
            "fake LLM + embedder per turn, subtracted (ms)",
            et["fakes_per_turn_ms"],
            bt["fakes_per_turn_ms"] if bt else None,
        )
        for stat in ("p50_ms", "p99_ms"):
            ev = et["learn_overhead"][stat]
            bv = bt["learn_overhead"][stat] if bt else None
            add(
                f"background learning per turn, engine {stat[:3]} (ms)",
                ev,
                bv,
                ratio(ev, bv),
                "after the reply, not in the turn",
            )
        eb, bb = e.get("burst"), (b or {}).get("burst")
        if eb:
            n = eb["conversations"]
            goal = TARGET_WALL_FACTOR * CONCURRENT_LATENCY
            add(
                f"{n:,} at once, LLM {CONCURRENT_LATENCY * 1000:.0f} ms: answered",
                f"{eb['answered']:,}/{n:,}",
                f"{bb['answered']:,}/{n:,}" if bb else None,
                "",
                verdict(eb["answered"] == n),
            )
            add(
                "  wall time (s)",
                f"{eb['wall_s']:.2f}",
                f"{bb['wall_s']:.2f}" if bb else None,
                ratio(eb["wall_s"], bb["wall_s"] if bb else None),
                f"≤ {goal:.2f} s: {verdict(eb['wall_s'] <= goal)}",
            )
            add(
                f"  wall / ({TARGET_WALL_FACTOR:g} × {CONCURRENT_LATENCY * 1000:.0f} ms)",
                f"{eb['wall_s'] / goal:.2f}×",
                f"{bb['wall_s'] / goal:.2f}×" if bb else None,
            )
            floor_e = CONCURRENT_LATENCY + n * et["overhead"]["mean_ms"] / 1000
            floor_b = CONCURRENT_LATENCY + n * bt["overhead"]["mean_ms"] / 1000 if bt else None
            add(
                f"  wall / (500 ms + {n:,} × mean overhead)",
                f"{eb['wall_s'] / floor_e:.2f}× (of {floor_e:.2f} s)",
                f"{bb['wall_s'] / floor_b:.2f}× (of {floor_b:.2f} s)" if bb and floor_b else None,
            )
            add(
                "  reply latency p50 / p99 (ms)",
                f"{eb['latency']['p50_ms']:.0f} / {eb['latency']['p99_ms']:.0f}",
                f"{bb['latency']['p50_ms']:.0f} / {bb['latency']['p99_ms']:.0f}" if bb else None,
            )
            add(
                "  CPU during the burst (s)",
                f"{eb['cpu_s']:.2f}",
                f"{bb['cpu_s']:.2f}" if bb else None,
            )
            add(
                "  then background learning of all (s)",
                f"{eb['learn_drain_s']:.2f}",
                f"{bb['learn_drain_s']:.2f}" if bb else None,
            )
        add(
            "RSS after preload (MB)",
            f"{e['rss_loaded_mb']:,.0f}",
            f"{b['rss_loaded_mb']:,.0f}" if b else None,
        )
        add("RSS peak (MB)", f"{e['rss_peak_mb']:,.0f}", f"{b['rss_peak_mb']:,.0f}" if b else None)
        add(
            "preload, batch chunks of 500 (items/s)",
            f"{e['preload']['items_per_s']:,.0f}",
            f"{b['preload']['items_per_s']:,.0f}" if b else None,
        )
        for i, (label, ev, bv, r, t) in enumerate(rows):
            size = f"{pair.items:,} ({pair.items // e['users']:,}/user)" if i == 0 else ""
            if pair.skipped and i == 0:
                bv = f"not run: {pair.skipped}"
            lines.append(f"| {size} | {label} | {ev} | {bv} | {r} | {t} |")
    return "\n".join(lines)


def target_lines(pairs: Sequence[Pair]) -> list[str]:
    at = [p for p in pairs if p.items == TARGET_ITEMS]
    label = f"Targets at {TARGET_ITEMS:,} memories (embedded defaults)"
    if not at:
        return [f"{label}: n/a ({TARGET_ITEMS:,} not in --sizes)"]
    p = at[0]
    o = p.edge["turns"]["overhead"]
    lines = [
        f"{label}: overhead p50 {o['p50_ms']:.3f} ms ≤ {TARGET_P50_MS:g} ms "
        f"{verdict(o['p50_ms'] <= TARGET_P50_MS)}; p99 {o['p99_ms']:.3f} ms ≤ "
        f"{TARGET_P99_MS:g} ms {verdict(o['p99_ms'] <= TARGET_P99_MS)}",
    ]
    if p.base:
        bo = p.base["turns"]["overhead"]
        r50, r99 = o["p50_ms"] / bo["p50_ms"], o["p99_ms"] / bo["p99_ms"]
        lines.append(
            f"Within {TARGET_RATIO:g}× of the in-memory baseline at {TARGET_ITEMS:,}: p50 "
            f"{r50:.2f}× {verdict(r50 <= TARGET_RATIO)}, p99 {r99:.2f}× "
            f"{verdict(r99 <= TARGET_RATIO)}"
        )
    else:
        lines.append(f"Baseline at {TARGET_ITEMS:,}: not run ({p.skipped}).")
    if burst_ := p.edge.get("burst"):
        goal = TARGET_WALL_FACTOR * CONCURRENT_LATENCY
        lines.append(
            f"{burst_['conversations']:,} at once: {burst_['answered']:,} answered; wall "
            f"{burst_['wall_s']:.2f} s vs {goal:.2f} s = {burst_['wall_s'] / goal:.2f}× "
            f"{verdict(burst_['wall_s'] <= goal)}"
        )
    return lines


def critical_path(p: dict[str, Any]) -> list[tuple[str, float]]:
    """A turn's wall time, split: the event loop's own work by category, then what its
    idle time was spent waiting for (other threads' work), then waiting on nobody
    (thread wake-ups, a CPU taken by another process). Checkpoint writes may overlap
    with the loop's work, so the last part is clamped at 0."""
    wall = p["wall_ms_per_turn"]
    loop = p["threads"].get(THREAD_ROLES[0][1], [])
    idle = sum(c["ms_per_turn"] for c in loop if c["label"] == IDLE)
    parts = [(f"event loop: {c['label']}", c["ms_per_turn"]) for c in loop if c["label"] != IDLE]
    workers = 0.0
    for role, cats in p["threads"].items():
        if role == THREAD_ROLES[0][1]:
            continue
        for c in cats:
            if c["label"] != IDLE and c["ms_per_turn"] >= 0.0005:
                parts.append((f"{role}: {c['label']}", c["ms_per_turn"]))
                workers += c["ms_per_turn"]
    parts.sort(key=lambda kv: -kv[1])
    parts.append(("waiting on no thread (wake-ups, CPU contention)", max(idle - workers, 0.0)))
    covered = sum(v for _, v in parts)
    if covered < wall:
        parts.append(("between turns / unsampled", wall - covered))
    return parts


def component(label: str) -> str:
    """The component a category belongs to, for the one-line-per-component summary."""
    if label in (PLUMBING, OTHER) or label.startswith(("waiting", "between")):
        return label
    for prefix, name in (
        ("SQLite", "checkpointer (SQLite, aiosqlite, serde)"),
        ("aiosqlite", "checkpointer (SQLite, aiosqlite, serde)"),
        ("checkpoint", "checkpointer (SQLite, aiosqlite, serde)"),
        ("store:", "store (EdgeStore: plans, conversion, engine)"),
        ("fake", "fake LLM + embedder (subtracted)"),
        ("engine:", "engine code (bot, writer, metrics, prompt)"),
    ):
        if label.startswith(prefix):
            return name
    return "LangGraph + langchain_core runtime (Pregel, runnables, messages, pydantic)"


def pyspy_lines(p: dict[str, Any], title: str) -> list[str]:
    wall = p["wall_ms_per_turn"]
    path = critical_path(p)
    by_component: Counter[str] = Counter()
    for label, value in path:
        by_component[component(label.split(": ", 1)[-1])] += value
    out = [
        "",
        f"py-spy, {title}: {p['turns']} turns in {p['seconds']:.1f} s ({wall:.3f} ms per "
        f"turn), sampled at {p['rate_hz']} Hz, all threads, idle included. The turn's wall "
        "time along its critical path, by component:",
        "",
        "| component | ms per turn | share of the turn |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {name} | {value:.3f} | {value / wall:.1%} |"
        for name, value in by_component.most_common()
        if value >= 0.0005
    ]
    out += [
        "",
        "In detail (thread: category):",
        "",
        "| where | ms per turn | share of the turn |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {label} | {value:.3f} | {value / wall:.1%} |"
        for label, value in path
        if value >= 0.0005
    ]
    out += [
        "",
        "Busy time of all threads by category:",
        "",
        "| category (innermost matching frame) | share of busy time | ms per turn |",
        "|---|---:|---:|",
    ]
    out += [
        f"| {c['label']} | {c['share']:.1%} | {c['ms_per_turn']:.3f} |"
        for c in p["busy"]
        if c["ms_per_turn"] >= 0.0005
    ]
    return out


def profile_lines(pairs: Sequence[Pair]) -> list[str]:
    out: list[str] = []
    for pair in pairs:
        prof = pair.edge.get("profile")
        if not prof:
            continue
        out += [
            "",
            f"### Where a turn's time goes, EdgeStore + SQLite saver, {pair.items:,} memories",
        ]
        if "pyspy_turns" in prof:
            out += pyspy_lines(prof["pyspy_turns"], "the turns")
            out += pyspy_lines(prof["pyspy_learn"], "their background learning (one flush)")
        if "pyspy" in prof:
            out += ["", f"py-spy: {prof['pyspy']}"]
        s = prof["spans"]
        out += [
            "",
            f"Timed calls ({ABLATION_TURNS} turns; wall time inside each awaited call, per turn; "
            "checkpoint writes overlap with the next step, so the parts can add up to more "
            "than the turn):",
            "",
            "| part of the turn | ms per turn | calls per turn |",
            "|---|---:|---:|",
            f"| whole turn, end to end | {s['turn_ms']:.3f} | 1 |",
        ]
        for label, value in sorted(s["spans_ms"].items(), key=lambda kv: -kv[1]):
            out.append(f"| {label} | {value:.3f} | {s['calls_per_turn'][label]:.1f} |")
        out.append(f"| the embedder's own time (in the store call) | {s['embedder_ms']:.3f} | |")
        out.append(f"| the fake LLM's own time | {s['fake_llm_ms']:.3f} | |")
        if prof.get("ablations"):
            o = pair.edge["turns"]["overhead"]
            out += [
                "",
                f"Ablations: the same store, process and kind of turns, one change each "
                f"({ABLATION_TURNS} turns each; the default row is the table's):",
                "",
                "| setup | overhead p50 (ms) | p99 (ms) | mean (ms) | learning p50 (ms) |",
                "|---|---:|---:|---:|---:|",
                f"| default: EdgeStore + SqliteSaver (1 thread) | {ms(o['p50_ms'])} | "
                f"{ms(o['p99_ms'])} | {ms(o['mean_ms'])} | "
                f"{ms(pair.edge['turns']['learn_overhead']['p50_ms'])} |",
            ]
            for a in prof["ablations"]:
                o = a["overhead"]
                out.append(
                    f"| {a['name']} | {ms(o['p50_ms'])} | {ms(o['p99_ms'])} | "
                    f"{ms(o['mean_ms'])} | {ms(a['learn_overhead']['p50_ms'])} |"
                )
    return out


def header(args: argparse.Namespace) -> list[str]:
    return [
        "## MemoryBot engine overhead per turn",
        "",
        f"{args.users:,} users; {args.threads} conversations (one per user) take "
        f"{args.warmup} warm-up and {args.turns:,} measured turns, one at a time, alternating "
        "statements and questions; the same turns in both setups. Overhead = "
        "`MemoryBot.chat` end to end minus the fake LLM's (0 ms sleep) and the seeded "
        "embedder's own time. Background learning (after the reply) is not in the turn: "
        "the bench flushes it after each turn and times it apart.",
        "membot: `MemoryBot.open()` defaults, EdgeStore (no HNSW) and SqliteSaver (1 thread) on "
        "disk in a temp dir. Baseline: InMemoryStore (same embedder and index) + "
        "InMemorySaver. Each setup and size runs in its own process.",
        "",
    ]


def software() -> dict[str, str]:
    names = ("langgraph", "langgraph-checkpoint-sqlite", "langgraph-store-qdrant", "qdrant-edge-py")
    return {n: metadata.version(n) for n in names} | {"python": platform.python_version()}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="comma-separated")
    parser.add_argument("--users", type=int, default=USERS)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--warmup", type=int, default=WARMUP_TURNS)
    parser.add_argument("--turns", type=int, default=TURNS)
    parser.add_argument("--concurrent", type=int, default=CONCURRENT)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy profile, spans and ablations at the largest size",
    )
    parser.add_argument(
        "--profile-dir", type=Path, help="keep py-spy's raw stacks here (flame graph input)"
    )
    parser.add_argument(
        "--baseline-max-items",
        type=int,
        help="largest size to run the InMemoryStore baseline at (default: what fits in half "
        "of MemAvailable at ~16 KB per item)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--quick", action="store_true", help="CI smoke: sizes 1000 and 10000, fewer turns"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        args.sizes = [1_000, 10_000]
        args.threads, args.warmup, args.turns, args.concurrent = 20, 30, 100, 100
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        result = asyncio.run(worker(json.loads(args.worker)))
        args.json.write_text(json.dumps(result, default=_jsonable))
        return
    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load_start = os.getloadavg()[0]
    cap = args.baseline_max_items
    if cap is None:
        cap = int(mem_available_mb() * 2**20 / 2 / BASELINE_BYTES_PER_ITEM)
    pairs = []
    for items in args.sizes:
        spec = {
            "items": items,
            "users": args.users,
            "threads": args.threads,
            "warmup": args.warmup,
            "turns": args.turns,
            "concurrent": args.concurrent,
        }
        log(f"{items:,} memories")
        edge = run_worker(
            {
                **spec,
                "setup": "edge",
                "profile": args.profile and items == max(args.sizes),
                "profile_dir": str(args.profile_dir.resolve()) if args.profile_dir else None,
            }
        )
        if items <= cap:
            pairs.append(Pair(items, edge, run_worker({**spec, "setup": "baseline"})))
        else:
            need = items * BASELINE_BYTES_PER_ITEM / 2**30
            why = f"needs ~{need:.0f} GB for InMemoryStore, over the cap of {cap:,} items"
            log(f"  baseline skipped: {why}")
            pairs.append(Pair(items, edge, None, skipped=why))
    wall = time.perf_counter() - started
    load_end = os.getloadavg()[0]
    print("\n".join(header(args)))
    print(f"`{command_line()}` — {when} — nproc {nproc}")
    print()
    print(table(pairs))
    print()
    print("\n".join(target_lines(pairs)))
    print("\n".join(profile_lines(pairs)))
    print()
    print(
        f"- wall time {wall:.0f} s; 1-min load average {load_start:.1f} at start, "
        f"{load_end:.1f} at end, on {nproc} CPUs"
        + (
            " — busy machine: tails include waiting for a CPU"
            if max(load_start, load_end) > (nproc or 1) * 0.75
            else ""
        )
    )
    for pair in pairs:
        if "disk_mb" in pair.edge:
            print(f"- {pair.items:,}: membot data dir {pair.edge['disk_mb']:,.0f} MB on disk")
    if args.json:
        meta = {
            "command": command_line(),
            "date": when,
            "nproc": nproc,
            "wall_s": wall,
            "loadavg_1min": [load_start, load_end],
            "software": software(),
            "targets": target_lines(pairs),
            "baseline_max_items": cap,
        }
        payload = {
            "meta": meta,
            "results": [
                {
                    "items": p.items,
                    "membot": p.edge,
                    "baseline": p.base,
                    "baseline_skipped": p.skipped,
                }
                for p in pairs
            ],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Counter | Spans):
        return dict(value) if isinstance(value, Counter) else {}
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    main()
