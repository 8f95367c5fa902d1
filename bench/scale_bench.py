"""Scale path: messages per second served by one `membot run` process against two.

Why: the scale path (checkpoints, turn locks and event claims in a shared Postgres) is
meant to let a second process take half of the load. This measures whether it does on
this machine, and what limits it.

Setup, the same as `tests/test_scale.py`: real `membot run` processes in Slack HTTP mode,
each with its own embedded memory store and data directory, sharing a fresh Postgres
database (`membot_scale_bench_<hex>`, dropped afterwards); the scheduler off. One fake
Slack and one fake Anthropic API (tests/fakes) run in this process. The fake model
answers every request after `--latency` (200 ms): chat turns with an echo, memory
extraction (after the reply, in the background) with one ADD of what the user said, so
every conversation also costs a real memory write, as it would in production.

Load: `--conversations` (500) people each send one DM (one message per conversation, so
no turn waits for another turn of its thread: this measures throughput, not per-thread
serialisation, which tests/test_scale.py covers). All events are sent at once, spread
round-robin over the processes like a load balancer (each event goes to one process).
Before that, every process answers a warm-up burst, so model loading and growing the
connection pools are not measured.

Measured per run: wall time from sending the first event to the last answer seen by the
fake Slack (`chat.update` of the placeholder), msgs/s = correct answers / wall time (an
apology instead of the echo counts as failed), and each message's reply latency (from
sending it to its answer). To tell a CPU limit from a lock-pool limit: CPU used by the
bots, by the fakes (this process) and by the whole machine during the burst (other
people's processes show up there), the bots' CPU per message including the background
learning it causes, and how many turns held a turn lock at once (sampled from
`pg_locks`; with Little's law that gives how long a turn held its lock).

A turn holds one connection of its process's lock pool (`MEMBOT_POSTGRES_LOCK_CONNECTIONS`,
default 20) for its whole duration, so that caps turns in flight per process. Both the
default and `--locks-high` (30 by default, lowered if two processes would not fit in the
server's `max_connections`; each process also has pools of 10 checkpoint, 4 claim and 2
memory-journal connections) are measured.

    .venv/bin/python bench/scale_bench.py [--conversations 500] [--json out.json] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes, from a checkout

from engine.memory.manager import MEMORY_TOOL
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.fakes.slack import FakeSlack, message
from tests.replicas import POSTGRES_URL, free_port, fresh_database, spawn_replica

SECRET = "bench-secret"
DEFAULT_LOCKS = 20  # MEMBOT_POSTGRES_LOCK_CONNECTIONS' default
# Each process's other Postgres pools: checkpoints (MEMBOT_POSTGRES_CHECKPOINT_CONNECTIONS'
# default), event claims (engine/claims.py) and the memory journal (engine/memory/outbox.py).
OTHER_CONNECTIONS = 10 + 4 + 2
BENCH_CONNECTIONS = 2  # this script: admin + the sampler


def fake_model(body: dict[str, Any]) -> str | ToolUse:
    """Chat: echo the message (the answer names its question). Extraction: ADD it."""
    if not body.get("tools"):
        return echo_reply(body)
    payload = json.loads(body["messages"][0]["content"])
    said = [m["text"] for m in payload["new_messages"] if m["from"] == "user"]
    return ToolUse(MEMORY_TOOL.name, {"operations": [{"action": "ADD", "text": t} for t in said]})


class TimedSlack(FakeSlack):
    """FakeSlack that notes when each placeholder was edited into its answer, and sends
    events without a client-side connection limit (Slack has none either)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Per channel (one conversation each here): when the answer came, and its text.
        self.answered: dict[str, tuple[float, str]] = {}

    async def __aenter__(self) -> TimedSlack:
        await super().__aenter__()
        await self._http.close()
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self

    async def _api(self, request: Any) -> Any:
        response = await super()._api(request)
        call = self.calls[-1]  # ours: nothing awaits between its append and here
        if call.method == "chat.update":
            self.answered[call.args["channel"]] = (time.perf_counter(), call.args["text"])
        return response


# -- Postgres ------------------------------------------------------------------------------


async def connection_budget() -> tuple[int, int]:
    """(max_connections, connections still free for us now)."""
    async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        row = await cur.fetchone()
    assert row is not None
    max_connections, reserved, in_use = row
    return max_connections, max_connections - reserved - in_use


class Sampler:
    """Every `every` seconds: how many turn locks (advisory locks) are granted, and how
    many connections the bots hold, in the bench database."""

    def __init__(self, db_url: str, every: float = 0.05) -> None:
        self.db_url, self.every = db_url, every
        self.locks: list[int] = []
        self.connections: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
            while True:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM pg_locks l JOIN pg_database d"
                    "        ON d.oid = l.database AND d.datname = current_database()"
                    "        WHERE l.locktype = 'advisory' AND l.granted),"
                    " (SELECT count(*) - 1 FROM pg_stat_activity"
                    "  WHERE datname = current_database())"
                )
                row = await cur.fetchone()
                assert row is not None
                self.locks.append(int(row[0]))
                self.connections.append(int(row[1]))
                await asyncio.sleep(self.every)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task


# -- the bot processes ---------------------------------------------------------------------


@dataclass
class Replica:
    url: str
    process: asyncio.subprocess.Process
    log: Path


async def start_replica(
    n: int, work_dir: Path, db_url: str, slack: FakeSlack, llm: FakeLLM, locks: int
) -> Replica:
    port = free_port()
    log = work_dir / f"replica{n}.stderr"
    process = await spawn_replica(
        data_dir=work_dir / f"replica{n}",
        db_url=db_url,
        slack=slack,
        llm=llm,
        token=f"xoxb-bench{n}",
        signing_secret=SECRET,
        port=port,
        log=log,
        postgres_lock_connections=str(locks),
    )
    replica = Replica(f"http://127.0.0.1:{port}/slack/events", process, log)
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(120):
            while True:
                if process.returncode is not None:
                    raise SystemExit(f"membot run exited at start:\n{log.read_text()}")
                try:
                    async with http.get(replica.url):
                        return replica
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise


async def stop_replica(replica: Replica) -> None:
    if replica.process.returncode is None:
        replica.process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(replica.process.wait(), 120)
    except TimeoutError:
        replica.process.kill()
        await replica.process.wait()
        raise SystemExit(f"membot run ignored SIGTERM:\n{replica.log.read_text()}") from None
    log = replica.log.read_text(errors="replace")
    if replica.process.returncode != 0 or "Traceback" in log:
        raise SystemExit(f"membot run failed ({replica.process.returncode}):\n{log}")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far, every process (Linux)."""
    user, nice, system, idle, iowait, *rest = map(
        int, Path("/proc/stat").open().readline().split()[1:]
    )
    total = user + nice + system + idle + iowait + sum(rest[:3])  # + irq, softirq, steal
    return total - idle - iowait, total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- one run -------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def send_burst(
    slack: TimedSlack, replicas: list[Replica], tag: str, count: int
) -> tuple[float, dict[str, tuple[float, str]]]:
    """`count` one-message conversations at once, round-robin over the replicas; returns
    the start time and, per conversation (channel), when its message was sent and the
    answer expected."""
    sent: dict[str, tuple[float, str]] = {}

    async def one(i: int) -> None:
        channel, text = f"D{tag}{i:05d}", f"hello from {tag} conversation {i}"
        event = message(f"U{tag}{i}", text, channel=channel)
        sent[channel] = (time.perf_counter(), f"echo: {text}")
        delivered = await slack.post_event(replicas[i % len(replicas)].url, event)
        if delivered.status != 200:
            raise SystemExit(f"event not acknowledged: {delivered}")

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    return start, sent


async def wait_answers(slack: TimedSlack, sent: dict[str, Any], seconds: float) -> None:
    """Until every conversation got an answer (right or not)."""
    deadline = time.monotonic() + seconds
    while True:
        missing = sent.keys() - slack.answered.keys()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(missing)} of {len(sent)} messages unanswered")
        await asyncio.sleep(0.02)


async def wait_learnt(llm: FakeLLM, count: int, seconds: float = 300) -> None:
    """Until `count` memory extractions were requested (background work is done)."""
    deadline = time.monotonic() + seconds
    while len(llm.tool_requests()) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{len(llm.tool_requests())} of {count} extractions ran")
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # let the last ones write their memories


async def run(processes: int, locks: int, conversations: int, latency: float) -> dict[str, Any]:
    warmup = min(conversations, 2 * locks) * processes
    async with (
        fresh_database("membot_scale_bench") as db_url,
        TimedSlack(signing_secret=SECRET) as slack,
        FakeLLM(fake_model) as llm,
    ):
        llm.delay = latency
        with tempfile.TemporaryDirectory(prefix="membot-scale-") as tmp:
            # One after the other: replicas starting together on an empty database can race
            # creating their tables (CREATE TABLE IF NOT EXISTS is not concurrency-safe).
            replicas: list[Replica] = []
            try:
                for n in range(processes):
                    replicas.append(await start_replica(n, Path(tmp), db_url, slack, llm, locks))
                _, sent = await send_burst(slack, replicas, "w", warmup)
                await wait_answers(slack, sent, seconds=300)
                await wait_learnt(llm, warmup)

                sampler = Sampler(db_url)
                sampler.start()
                cpu_before = [cpu_seconds(r.process.pid) for r in replicas]
                harness_before, machine_before = time.process_time(), machine_ticks()
                load = os.getloadavg()[0]
                start, sent = await send_burst(slack, replicas, "m", conversations)
                await wait_answers(slack, sent, seconds=600)
                answered = dict(slack.answered)
                end = max(answered[channel][0] for channel in sent)
                cpu = sum(cpu_seconds(r.process.pid) for r in replicas) - sum(cpu_before)
                harness = time.process_time() - harness_before
                busy, total = (a - b for a, b in zip(machine_ticks(), machine_before, strict=True))
                await sampler.stop()
                await wait_learnt(llm, warmup + conversations)
                cpu_all = sum(cpu_seconds(r.process.pid) for r in replicas) - sum(cpu_before)
            finally:
                await asyncio.gather(*(stop_replica(r) for r in replicas))
    wall = end - start
    latencies = [(answered[channel][0] - at) * 1000 for channel, (at, _) in sent.items()]
    failed = sum(answered[channel][1] != expected for channel, (_, expected) in sent.items())
    in_flight = sampler.locks or [0]
    mean_in_flight = statistics.fmean(in_flight)
    return {
        "processes": processes,
        "lock_connections": locks,
        "conversations": conversations,
        "wall_s": wall,
        "msgs_per_s": (conversations - failed) / wall,
        "latency_p50_ms": pct(latencies, 0.5),
        "latency_p99_ms": pct(latencies, 0.99),
        "bot_cpu_s": cpu,
        # Up to the end of the background learning the burst caused (idle time included).
        "bot_cpu_ms_per_msg": cpu_all / conversations * 1000,
        "bot_cpu_share": cpu / (wall * (os.cpu_count() or 1)),
        "harness_cpu_share": harness / (wall * (os.cpu_count() or 1)),  # fake Slack + LLM
        "machine_busy_share": busy / total,  # everything, other people's processes too
        "load_before": load,
        "failed": failed,
        "postgres_connections_max": max(sampler.connections or [0]),
        "turn_locks_max": max(in_flight),
        "turn_locks_mean": mean_in_flight,
        # Little's law: turns in flight = throughput x time a turn holds its lock.
        "lock_hold_ms": mean_in_flight / (conversations / wall) * 1000,
    }


# -- main ----------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.2, help="fake model seconds")
    parser.add_argument("--locks-high", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="20 conversations (smoke test)")
    args = parser.parse_args()
    conversations = 20 if args.quick else args.conversations

    max_connections, free = await connection_budget()
    fits = (free - BENCH_CONNECTIONS) // 2 - OTHER_CONNECTIONS
    high = min(args.locks_high, fits)
    if high <= DEFAULT_LOCKS:
        raise SystemExit(f"Postgres has room for only {fits} lock connections per process")

    command = " ".join(["python bench/scale_bench.py", *sys.argv[1:]])
    print(
        f"`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — "
        f"nproc {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, {conversations} one-message "
        f"conversations at once, fake model {args.latency * 1000:.0f} ms, Postgres "
        f"max_connections {max_connections}\n"
    )
    results = []
    for locks in (DEFAULT_LOCKS, high):
        for processes in (1, 2):
            results.append(await run(processes, locks, conversations, args.latency))

    print(
        "| lock conns / process | processes | msgs/s | vs 1 process | wall (s) | reply p50 (ms) "
        "| reply p99 (ms) | failed | CPU busy: bots / fakes / machine | bot CPU per msg (ms) "
        "| turns in flight max / mean | lock held per turn (ms) | Postgres connections |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for r in results:
        one = next(
            x
            for x in results
            if x["processes"] == 1 and x["lock_connections"] == r["lock_connections"]
        )
        r["ratio_vs_1"] = r["msgs_per_s"] / one["msgs_per_s"]
        print(
            f"| {r['lock_connections']} | {r['processes']} | {r['msgs_per_s']:.1f} "
            f"| {r['ratio_vs_1']:.2f}× | {r['wall_s']:.2f} | {r['latency_p50_ms']:.0f} "
            f"| {r['latency_p99_ms']:.0f} | {r['failed']} | {r['bot_cpu_share']:.0%} / "
            f"{r['harness_cpu_share']:.0%} / {r['machine_busy_share']:.0%} "
            f"| {r['bot_cpu_ms_per_msg']:.0f} "
            f"| {r['turn_locks_max']} / {r['turn_locks_mean']:.1f} | {r['lock_hold_ms']:.0f} "
            f"| {r['postgres_connections_max']} |"
        )
    print(
        f"\nmsgs/s counts correct answers only; `failed` got an apology instead. Ceiling from "
        f"the lock pool alone: lock connections × processes / {args.latency * 1000:.0f} ms "
        f"(e.g. {DEFAULT_LOCKS} → {DEFAULT_LOCKS / args.latency:.0f} msgs/s per process)."
    )
    if args.json:
        report = {
            "command": command,
            "nproc": os.cpu_count(),
            "max_connections": max_connections,
            "latency_s": args.latency,
            "results": results,
        }
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
