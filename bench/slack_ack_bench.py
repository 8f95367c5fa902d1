"""How fast the Slack adapter acknowledges events while it is busy answering them.

Slack retries any event not acknowledged within 3 s, so the ack must never wait for
the engine. The fake Slack runs in its own process (Slack is remote): it sends N events
at once to the app and times each from sending to its ack, then waits until every
event has been answered. The app is the real adapter (bolt + MemoryBot with the offline
model and the local sentence model), so every event also costs real work after its ack.

Both connection modes are measured: Socket Mode (one websocket, envelopes acked over
it; the recommended mode) and HTTP mode (one signed request per event). Baseline in the
same run: a bare bolt `AsyncApp` whose listener does nothing, in the same mode.

    .venv/bin/python bench/slack_ack_bench.py [--events 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bots.slack import SlackAdapter
from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.slack import FakeSlack, message

SECRET = "bench-secret"
APP_TOKEN = "xapp-bench"


def events(count: int) -> list[dict]:
    return [
        message(f"U{i % 50}", f"remember: I like tea number {i}", channel=f"D{i % 50}")
        for i in range(count)
    ]


# -- the fake Slack process ------------------------------------------------------------


async def fake_slack(mode: str, count: int, answers: int) -> None:
    """Prints the Web API URL, reads the app URL (HTTP mode), sends `count` events at
    once, waits for `answers` chat.update calls, prints the ack times as JSON."""
    async with FakeSlack(signing_secret=SECRET) as slack:
        print(slack.api_url, flush=True)
        if mode == "http":
            url = (await asyncio.to_thread(sys.stdin.readline)).strip()
            sends = [slack.post_event(url, event) for event in events(count)]
        else:
            await slack.connected(timeout=60)
            sends = [slack.push("events_api", slack.event_payload(e)) for e in events(count)]
        start = time.perf_counter()
        acked = await asyncio.gather(*sends)
        if mode == "http" and any(d.status != 200 for d in acked):
            raise SystemExit("an event was not acknowledged with 200")
        if answers:
            await slack.wait_for("chat.update", count=answers, timeout=600)
        answered = time.perf_counter() - start
        print(json.dumps({"acks": [a.seconds * 1000 for a in acked], "answered": answered}))


# -- the app process -------------------------------------------------------------------


@asynccontextmanager
async def connected(app: AsyncApp, mode: str, fake: asyncio.subprocess.Process) -> AsyncIterator:
    if mode == "socket":
        handler = AsyncSocketModeHandler(app, APP_TOKEN)
        await handler.connect_async()
        try:
            yield
        finally:
            await handler.close_async()
        return
    runner = web.AppRunner(app.web_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events\n"
    assert fake.stdin is not None
    fake.stdin.write(url.encode())
    await fake.stdin.drain()
    try:
        yield
    finally:
        await runner.cleanup()


async def measure(mode: str, count: int, *, with_engine: bool) -> dict:
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--fake",
        mode,
        "--events",
        str(count),
        "--answers",
        str(count if with_engine else 0),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fake.stdout is not None
    api_url = (await fake.stdout.readline()).decode().strip()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            data_dir=Path(data_dir),
            llm_provider="offline",
            slack_bot_token="xoxb-bench",
            slack_signing_secret=SECRET,
            slack_app_token=APP_TOKEN if mode == "socket" else None,
            slack_api_url=api_url,
        )
        if with_engine:
            async with MemoryBot.open(settings) as bot:
                adapter = SlackAdapter(bot, settings)
                async with connected(adapter.app, mode, fake):
                    out, _ = await fake.communicate()
                await adapter.aclose()
        else:
            app = AsyncApp(
                client=AsyncWebClient(token="xoxb-bench", base_url=api_url), signing_secret=SECRET
            )
            app.event("message")(_ignore)
            async with connected(app, mode, fake):
                out, _ = await fake.communicate()
    if fake.returncode:
        raise SystemExit(f"the fake Slack process failed ({fake.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["acks"].sort()
    return result


async def _ignore() -> None:
    return None


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--fake", choices=["http", "socket"], help=argparse.SUPPRESS)
    parser.add_argument("--answers", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake:
        await fake_slack(args.fake, args.events, args.answers)
        return
    n = args.events
    print(
        f"`python bench/slack_ack_bench.py --events {n}` — "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} — nproc {os.cpu_count()}, "
        f"{n} events in flight at once\n"
    )
    print("| mode | ack latency (ms) | bare bolt app | membot Slack adapter | ratio |")
    print("|---|---|---:|---:|---:|")
    verdicts = []
    for mode in ("socket", "http"):
        await measure(mode, 20, with_engine=False)  # warm-up
        base = (await measure(mode, n, with_engine=False))["acks"]
        ours = await measure(mode, n, with_engine=True)
        acks = ours["acks"]
        for name, q in (("p50", 0.5), ("p99", 0.99)):
            b, o = pct(base, q), pct(acks, q)
            print(f"| {mode} | {name} | {b:.1f} | {o:.1f} | {o / b:.2f}× |")
        mean_b, mean_o = statistics.fmean(base), statistics.fmean(acks)
        print(f"| {mode} | mean | {mean_b:.1f} | {mean_o:.1f} | {mean_o / mean_b:.2f}× |")
        verdict = "PASS" if pct(acks, 0.99) < 100 else "FAIL"
        verdicts.append(
            f"{mode}: ack p99 < 100 ms {verdict}; all {n} answered "
            f"{ours['answered']:.1f} s after the first event was sent"
        )
    print()
    print("\n".join(verdicts))


if __name__ == "__main__":
    asyncio.run(main())
