"""EdgeStore vs LangGraph's InMemoryStore: load throughput and per-user search latency.

What is measured, for each size (default 10k and 100k items, 1,000 users, one namespace
`("memories", f"user-{i}")` per user, 384-dim vectors, index fields `["text"]`):

- load throughput: `batch` of `PutOp`s in chunks of 500 (the same chunks for both stores),
  and single `put` throughput on ~1,000 extra puts made after the searches;
- filtered semantic search latency: `search(("memories", user), query=..., limit=5)` for
  random (user, query) pairs, p50 / p99 / mean, and EdgeStore / InMemoryStore ratios;
- `asearch` latency for EdgeStore from one coroutine, sequentially, so the cost of leaving
  the event loop (embedder executor + the store's thread pool) is visible;
- RSS before and after each load, for information only.

Why: the bot keeps per-user memories and searches them on every turn, so per-user
filtered search latency is the hot path; the target is EdgeStore search p99 < 2 ms at
100k items. InMemoryStore, measured in the same process and run, is the baseline.

Embeddings are not measured: every item and query text gets a seeded random unit vector
up front, and both stores share one `embed` function that looks vectors up in a dict.
EdgeStore runs on disk in a temp dir (its real default), without HNSW (`optimize()` is
never called): filtered searches are served by the payload index plus exact scoring.

Run: `PYTHONPATH=. python bench/store_bench.py [--quick] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import platform
import random
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from langgraph.store.base import BaseStore, PutOp
from langgraph.store.memory import InMemoryStore

from engine.store import EdgeStore

DIMS = 384
CHUNK = 500
SINGLE_PUTS = 1_000
WARMUP = 50
LIMIT = 5
SEED = 20_251_125
TARGET_ITEMS = 100_000
TARGET_P99_MS = 2.0

Vector = list[float]
Query = tuple[tuple[str, ...], str]


@dataclass
class Workload:
    """Everything one size needs, built once and replayed identically on both stores."""

    items: int
    users: int
    chunks: list[list[PutOp]]
    single_puts: list[PutOp]
    warmup: list[Query]
    queries: list[Query]
    vectors: dict[str, Vector]

    def embed(self, texts: Sequence[str]) -> list[Vector]:
        """The shared embedder: a dict lookup, identical cost for both stores."""
        return [self.vectors[t] for t in texts]

    def index(self) -> dict[str, Any]:
        return {"dims": DIMS, "embed": self.embed, "fields": ["text"]}


@dataclass
class Latency:
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    n: int


@dataclass
class StoreResult:
    store: str
    items: int
    batch_put_items_per_s: float
    single_put_items_per_s: float
    search: Latency
    search_cpu_ms: float = 0.0
    asearch: Latency | None = None
    rss_before_load_mb: float = 0.0
    rss_after_load_mb: float = 0.0
    close_s: float | None = None
    shard_info: dict[str, int] | None = None
    top_keys: list[list[str]] = field(default_factory=list, repr=False)


# -- workload ---------------------------------------------------------------------------


def namespace(user: int) -> tuple[str, ...]:
    return ("memories", f"user-{user}")


def unit_vectors(texts: list[str], rng: np.random.Generator) -> dict[str, Vector]:
    mat = rng.standard_normal((len(texts), DIMS), dtype=np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    return dict(zip(texts, mat.tolist(), strict=True))


def build_workload(items: int, users: int, n_queries: int, seed: int) -> Workload:
    """Item i belongs to user i % users; queries are fresh texts on random users."""
    pick = random.Random(seed)
    puts = [
        PutOp(namespace(i % users), f"m{i // users}", {"text": f"user-{i % users} memory {i}"})
        for i in range(items)
    ]
    singles = []
    for j in range(SINGLE_PUTS):
        user = pick.randrange(users)
        singles.append(PutOp(namespace(user), f"extra{j}", {"text": f"user-{user} extra {j}"}))
    questions = [
        (namespace(pick.randrange(users)), f"question {q}") for q in range(WARMUP + n_queries)
    ]
    texts = [op.value["text"] for op in (*puts, *singles)] + [q for _, q in questions]
    return Workload(
        items=items,
        users=users,
        chunks=[puts[i : i + CHUNK] for i in range(0, items, CHUNK)],
        single_puts=singles,
        warmup=questions[:WARMUP],
        queries=questions[WARMUP:],
        vectors=unit_vectors(texts, np.random.default_rng(seed)),
    )


# -- measurement ------------------------------------------------------------------------


def rss_mb() -> float:
    """Current resident set size; peak RSS where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def summarize(samples_ns: Sequence[int]) -> Latency:
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    return Latency(
        p50_ms=float(np.percentile(ms, 50)),
        p99_ms=float(np.percentile(ms, 99)),
        mean_ms=float(ms.mean()),
        max_ms=float(ms.max()),
        n=len(ms),
    )


def per_second(count: int, elapsed_ns: int) -> float:
    return count / (elapsed_ns / 1e9)


def time_batch_load(store: BaseStore, chunks: Sequence[Sequence[PutOp]]) -> int:
    gc.collect()
    start = time.perf_counter_ns()
    for chunk in chunks:
        store.batch(chunk)
    return time.perf_counter_ns() - start


def time_single_puts(store: BaseStore, ops: Sequence[PutOp]) -> int:
    gc.collect()
    start = time.perf_counter_ns()
    for op in ops:
        store.put(op.namespace, op.key, op.value)
    return time.perf_counter_ns() - start


@dataclass
class Searches:
    samples_ns: list[int]
    keys: list[list[str]]
    cpu_ns: int  # process CPU time (all threads) over the whole run


def time_searches(store: BaseStore, queries: Sequence[Query]) -> Searches:
    samples, keys = [], []
    gc.collect()
    cpu_start = time.process_time_ns()
    for ns, text in queries:
        start = time.perf_counter_ns()
        hits = store.search(ns, query=text, limit=LIMIT)
        samples.append(time.perf_counter_ns() - start)
        keys.append([h.key for h in hits])
    return Searches(samples, keys, time.process_time_ns() - cpu_start)


async def time_asearches(
    store: BaseStore, warmup: Sequence[Query], queries: Sequence[Query]
) -> list[int]:
    """Sequential `asearch` from one coroutine, after its own warm-up."""
    for ns, text in warmup:
        await store.asearch(ns, query=text, limit=LIMIT)
    samples: list[int] = []
    gc.collect()
    for ns, text in queries:
        start = time.perf_counter_ns()
        await store.asearch(ns, query=text, limit=LIMIT)
        samples.append(time.perf_counter_ns() - start)
    return samples


def shard_info(store: EdgeStore) -> dict[str, int]:
    info = store._shard.info()
    return {
        "points": info.points_count,
        "segments": info.segments_count,
        "indexed_vectors": info.indexed_vectors_count,
    }


def measure(name: str, store: BaseStore, work: Workload, rss_before: float) -> StoreResult:
    """Load, search (sync, then async for EdgeStore), then single puts; same order for both."""
    load_ns = time_batch_load(store, work.chunks)
    rss_after = rss_mb()
    log(f"  {name}: loaded {work.items:,} in {load_ns / 1e9:.2f} s")
    log(f"  {name}: RSS {rss_before:,.0f} MB before load, {rss_after:,.0f} MB after")
    time_searches(store, work.warmup)
    searches = time_searches(store, work.queries)
    result = StoreResult(
        store=name,
        items=work.items,
        batch_put_items_per_s=per_second(work.items, load_ns),
        single_put_items_per_s=0.0,
        search=summarize(searches.samples_ns),
        search_cpu_ms=searches.cpu_ns / 1e6 / len(work.queries),
        rss_before_load_mb=rss_before,
        rss_after_load_mb=rss_after,
        top_keys=searches.keys,
    )
    if isinstance(store, EdgeStore):
        result.shard_info = shard_info(store)
        result.asearch = summarize(asyncio.run(time_asearches(store, work.warmup, work.queries)))
    result.single_put_items_per_s = per_second(
        len(work.single_puts), time_single_puts(store, work.single_puts)
    )
    return result


def run_inmemory(work: Workload) -> StoreResult:
    rss_before = rss_mb()
    store = InMemoryStore(index=work.index())
    return measure("InMemoryStore", store, work, rss_before)


def run_edge(work: Workload) -> StoreResult:
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        rss_before = rss_mb()
        store = EdgeStore.open(Path(tmp) / "store", index=work.index())
        try:
            log(f"  EdgeStore dir: {tmp} (fs: {fs_type(Path(tmp))})")
            result = measure("EdgeStore", store, work, rss_before)
        finally:
            start = time.perf_counter_ns()
            store.close()
        result.close_s = (time.perf_counter_ns() - start) / 1e9
    return result


def run_size(items: int, users: int, n_queries: int) -> tuple[StoreResult, StoreResult, float]:
    """Both stores on one workload; returns them and the top-5 agreement between them."""
    log(f"size {items:,}: building workload ({users:,} users, {n_queries:,} queries)")
    work = build_workload(items, users, n_queries, SEED + items)
    # The precomputed vectors are ~40 M list slots; left to the collector, every full
    # collection walks them (about 1 s at 100k items). Freezing moves them out of its way.
    gc.collect()
    gc.freeze()
    try:
        base = run_inmemory(work)
        gc.collect()
        edge = run_edge(work)
    finally:
        gc.unfreeze()
    same = sum(a == b for a, b in zip(base.top_keys, edge.top_keys, strict=True))
    return base, edge, same / len(work.queries)


# -- output -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def fs_type(path: Path) -> str:
    """Filesystem type of the mount holding `path` (longest matching mount point)."""
    try:
        mounts = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best = max(
        (m for m in mounts if target == m[1] or target.startswith(m[1].rstrip("/") + "/")),
        key=lambda m: len(m[1]),
        default=None,
    )
    return best[2] if best else "unknown"


def command_line() -> str:
    prefix = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return prefix + shlex.join([sys.executable, *sys.argv])


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(value: float) -> str:
    return f"{value:.3f}"


def ratio(edge: float, base: float) -> str:
    return f"{edge / base:.2f}×" if base else "—"


def table_rows(base: StoreResult, edge: StoreResult) -> list[tuple[str, str, str, str]]:
    rows = [
        (
            f"batch put, chunks of {CHUNK} (items/s)",
            fmt_rate(base.batch_put_items_per_s),
            fmt_rate(edge.batch_put_items_per_s),
            ratio(edge.batch_put_items_per_s, base.batch_put_items_per_s),
        ),
        (
            f"single put, {SINGLE_PUTS:,} (items/s)",
            fmt_rate(base.single_put_items_per_s),
            fmt_rate(edge.single_put_items_per_s),
            ratio(edge.single_put_items_per_s, base.single_put_items_per_s),
        ),
    ]
    for stat in ("p50_ms", "p99_ms", "mean_ms"):
        b, e = getattr(base.search, stat), getattr(edge.search, stat)
        label = f"search {stat.removesuffix('_ms')} (ms)"
        rows.append((label, fmt_ms(b), fmt_ms(e), ratio(e, b)))
    rows.append(
        (
            "search CPU / query, all threads (ms)",
            fmt_ms(base.search_cpu_ms),
            fmt_ms(edge.search_cpu_ms),
            ratio(edge.search_cpu_ms, base.search_cpu_ms),
        )
    )
    if edge.asearch:
        a = edge.asearch
        rows.append(("asearch p50 / p99 (ms)", "—", f"{fmt_ms(a.p50_ms)} / {fmt_ms(a.p99_ms)}", ""))
    rows.append(
        (
            "RSS load Δ (MB)",
            f"{base.rss_after_load_mb - base.rss_before_load_mb:+,.0f}",
            f"{edge.rss_after_load_mb - edge.rss_before_load_mb:+,.0f}",
            "",
        )
    )
    return rows


def markdown(results: list[tuple[StoreResult, StoreResult, float]], users: int) -> str:
    lines = [
        "| items | metric | InMemoryStore | EdgeStore | Edge / InMem |",
        "|---:|---|---:|---:|---:|",
    ]
    for base, edge, _ in results:
        size = f"{base.items:,} ({base.items // users}/user)"
        for i, (label, b, e, r) in enumerate(table_rows(base, edge)):
            lines.append(f"| {size if i == 0 else ''} | {label} | {b} | {e} | {r} |")
    return "\n".join(lines)


def target_line(results: list[tuple[StoreResult, StoreResult, float]]) -> str:
    at_target = [edge for _, edge, _ in results if edge.items == TARGET_ITEMS]
    label = f"EdgeStore search p99 < {TARGET_P99_MS:g} ms at {TARGET_ITEMS // 1000}k"
    if not at_target:
        return f"{label}: n/a ({TARGET_ITEMS:,} not in --sizes)"
    p99 = at_target[0].search.p99_ms
    verdict = "PASS" if p99 < TARGET_P99_MS else "FAIL"
    return f"{label}: {verdict} (p99 = {p99:.3f} ms)"


def notes(results: list[tuple[StoreResult, StoreResult, float]]) -> list[str]:
    out = []
    for base, edge, agree in results:
        info = edge.shard_info or {}
        hnsw = "yes" if info.get("indexed_vectors") else "no"
        out.append(
            f"- {base.items:,} items: HNSW built: {hnsw} (segments {info.get('segments')}, "
            f"indexed vectors {info.get('indexed_vectors')}); identical top-{LIMIT} keys "
            f"in both stores for {agree:.1%} of queries; RSS InMemoryStore "
            f"{base.rss_before_load_mb:,.0f} → {base.rss_after_load_mb:,.0f} MB, EdgeStore "
            f"{edge.rss_before_load_mb:,.0f} → {edge.rss_after_load_mb:,.0f} MB; "
            f"EdgeStore close/flush {edge.close_s:.2f} s"
        )
    return out


def load_note(start: float, end: float, nproc: int) -> str:
    note = f"- 1-min load average {start:.1f} at start, {end:.1f} at end, on {nproc} CPUs"
    if max(start, end) > nproc * 0.75:
        note += (
            " — the machine was busy: latency tails include waiting for a CPU (compare the "
            "CPU-time row), rerun on an idle machine for README figures"
        )
    return note


def header(users: int, n_queries: int) -> list[str]:
    return [
        "## EdgeStore vs InMemoryStore",
        "",
        f'{users:,} users, one namespace each; {DIMS}-dim vectors; index fields ["text"]; '
        f"{n_queries:,} random (user, query) searches with limit={LIMIT} after {WARMUP} warm-up "
        "searches; the same PutOp chunks and queries for both stores.",
        "Embeddings are precomputed (seeded random unit vectors); both stores share one embed "
        "function that is a dict lookup, so no model cost is in these numbers.",
        "EdgeStore: on disk in a temp dir, no optimize() call, so no HNSW (see notes); asearch "
        "is one coroutine awaiting sequentially (embed via default executor + store pool).",
        "",
    ]


def software() -> dict[str, str]:
    names = ("langgraph", "langgraph-store-qdrant", "qdrant-edge-py", "numpy")
    return {n: metadata.version(n) for n in names} | {"python": platform.python_version()}


def write_json(path: Path, meta: dict[str, Any], results: list) -> None:
    payload = {
        "meta": meta,
        "results": [
            {
                "items": base.items,
                "top_keys_agreement": agree,
                "stores": [
                    {k: v for k, v in asdict(r).items() if k != "top_keys"} for r in (base, edge)
                ],
            }
            for base, edge, agree in results
        ],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


# -- CLI --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated item counts")
    parser.add_argument("--users", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 items, 200 queries")
    args = parser.parse_args(argv)
    args.sizes = [2_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.quick:
        args.queries = 200
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    nproc = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    load_start = os.getloadavg()[0]
    results = [run_size(n, args.users, args.queries) for n in args.sizes]
    wall = time.perf_counter() - started
    load_end = os.getloadavg()[0]
    print("\n".join(header(args.users, args.queries)))
    print(f"`{command_line()}` — {when} — nproc {nproc}")
    print()
    print(markdown(results, args.users))
    print()
    print(target_line(results))
    print()
    print("\n".join(notes(results)))
    print(
        "- RSS Δ of InMemoryStore leaves out its vectors: it keeps references to the "
        "precomputed lists (Python floats, ~12 KB per 384-dim vector), which a real "
        "embedder would allocate anew; EdgeStore's Δ includes its own copy (float32, "
        "mmap'd segment files)."
    )
    print(f"- wall time {wall:.1f} s")
    print(load_note(load_start, load_end, nproc))
    if args.json:
        meta = {
            "command": command_line(),
            "date": when,
            "nproc": nproc,
            "users": args.users,
            "queries": args.queries,
            "dims": DIMS,
            "chunk": CHUNK,
            "wall_s": wall,
            "loadavg_1min": [load_start, load_end],
            "software": software(),
            "target": target_line(results),
        }
        write_json(args.json, meta, results)


if __name__ == "__main__":
    main()
