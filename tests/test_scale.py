"""The scale path end to end: two `membot run` processes serve one Slack app.

Both processes run in Slack HTTP mode against one fake Slack and one fake Anthropic API
(echo replies, so every answer names the message it answers), each with its own
embedded memory store, and share a fresh Postgres database for checkpoints, per-thread
turn locks and event claims (a database created for the test, dropped afterwards). A
mention opens a channel thread; then fifty people write into it at once, and every event
reaches *both* processes under one event id, as a duplicate or Slack's retry would (most
copies race; every fifth arrives after the first was acknowledged). Then:

- the thread's checkpoint holds all fifty messages, each followed by its own answer (no
  turn overwrote another's save, whichever process ran it);
- every event got exactly one answer (one placeholder edited into one reply), none twice,
  none missing;
- both processes stop cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

from bots.slack import THINKING, thread_key
from engine.bot import PREVIOUS_CHANNEL
from engine.conversation import thread_state
from engine.memory.manager import MEMORY_TOOL
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.fakes.slack import Call, FakeSlack, app_mention, message
from tests.replicas import free_port, fresh_database, spawn_replica

SECRET = "scale-signing-secret"
PEOPLE = 50
START_SECONDS = 120  # startup of `membot run` (about 3 s here; far more on a busy machine)
STOP_SECONDS = 60

pytestmark = pytest.mark.timeout(300)  # a hang fails in bounded time; a pass takes ~20 s
SENTINEL = "DSENTINEL"  # prefix of a DM channel per replica (`DSENTINEL-<its token>`)


def model(body: dict[str, Any]) -> str | ToolUse:
    """Chat: echo the user's message. Memory extraction: nothing worth keeping."""
    if body.get("tools"):
        return ToolUse(MEMORY_TOOL.name, {"operations": []})
    return echo_reply(body)


class RecordingSlack(FakeSlack):
    """Also keeps the ts of every message posted in the thread's channel, to match edits to
    placeholders."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.posted_ts: list[str] = []

    def _post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        posted = super()._post_message(args)
        if not str(args["channel"]).startswith(SENTINEL):
            self.posted_ts.append(posted["ts"])
        return posted

    def outside_sentinels(self, method: str) -> list[Call]:
        return [c for c in self.calls_to(method) if not c.args["channel"].startswith(SENTINEL)]


@pytest.fixture
async def scale_db() -> AsyncIterator[str]:
    async with fresh_database("membot_scale") as url:
        yield url


@dataclass
class Replica:
    """One `membot run` process; its Slack token tells its Web API calls apart."""

    token: str
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


async def start_replica(
    name: str, tmp_path: Path, db_url: str, slack: FakeSlack, llm: FakeLLM
) -> Replica:
    port = free_port()
    process = await spawn_replica(
        data_dir=tmp_path / name,
        db_url=db_url,
        slack=slack,
        llm=llm,
        token=f"xoxb-{name}",
        signing_secret=SECRET,
        port=port,
        log=tmp_path / f"{name}.stderr",
        context_token_budget="1000000",  # nothing is summarised away
    )
    log = tmp_path / f"{name}.stderr"
    return Replica(f"xoxb-{name}", f"http://127.0.0.1:{port}/slack/events", process, log)


async def until_serving(replica: Replica) -> None:
    """Wait until the replica's HTTP endpoint answers (an unsigned GET gets 405)."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(START_SECONDS):
        while True:
            if replica.process.returncode is not None:
                pytest.fail(f"membot run exited early:\n{replica.stderr()}", pytrace=False)
            try:
                async with http.get(replica.url):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)


async def stop(replica: Replica) -> int:
    if replica.process.returncode is None:
        replica.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(replica.process.wait(), STOP_SECONDS)
    except TimeoutError:
        replica.process.kill()
        await replica.process.wait()
        pytest.fail(f"no exit {STOP_SECONDS} s after SIGTERM:\n{replica.stderr()}", pytrace=False)


async def to_both(
    slack: FakeSlack, replicas: list[Replica], event: dict[str, Any], event_id: str, n: int
) -> None:
    """One event, delivered to every replica under one event id: the first copy plain,
    the other marked as Slack's retry; which replica is sent to first alternates. Most
    copies race each other; every fifth event is a late retry, sent only after the first
    copy was acked (so that replica has claimed it: both replicas surely get work)."""
    first, second = replicas if n % 2 == 0 else replicas[::-1]
    copies = [
        slack.post_event(first.url, event, event_id=event_id),
        slack.post_event(second.url, event, event_id=event_id, retry_num=1),
    ]
    if n % 5 == 0:
        delivered = [await copy for copy in copies]
    else:
        delivered = await asyncio.gather(*copies)
    assert [d.status for d in delivered] == [200, 200], delivered


async def test_two_replicas_answer_a_busy_thread_once_each(tmp_path: Path, scale_db: str) -> None:
    async with RecordingSlack(signing_secret=SECRET) as slack, FakeLLM(model) as llm:
        # One after the other: replicas starting together on an empty database can race
        # creating the claims table (CREATE TABLE IF NOT EXISTS is not concurrency-safe).
        replicas: list[Replica] = []
        try:
            for name in "ab":
                replicas.append(await start_replica(name, tmp_path, scale_db, slack, llm))
                await until_serving(replicas[-1])

            opening = app_mention("U00", "<@UBOT> ideas for the offsite please", channel="C1")
            await to_both(slack, replicas, opening, "EvOPEN", 0)
            await slack.wait_for("chat.update")
            thread_ts = opening["ts"]

            said = {f"Ev{n:04d}": f"idea {n} from U{n:02d}" for n in range(1, PEOPLE + 1)}
            events = {
                event_id: message(
                    f"U{n:02d}", text, channel="C1", channel_type="channel", thread_ts=thread_ts
                )
                for n, (event_id, text) in enumerate(said.items(), 1)
            }
            await asyncio.gather(
                *(to_both(slack, replicas, e, i, n) for n, (i, e) in enumerate(events.items()))
            )
            await slack.wait_for("chat.update", count=PEOPLE + 1)
            # A sentinel per replica, answered after whatever it was still doing: a second
            # answer to any event would have been posted by then.
            for replica in replicas:
                channel = f"{SENTINEL}-{replica.token}"
                await slack.post_event(
                    replica.url, message("U99", "are you there?", channel=channel)
                )
                await slack.wait_for(
                    "chat.update", where=lambda c, ch=channel: c.args["channel"] == ch
                )
        finally:
            codes = await asyncio.gather(*(stop(r) for r in replicas))

        # Every event: one placeholder in the thread, edited once into its own answer.
        posts = slack.outside_sentinels("chat.postMessage")
        updates = slack.outside_sentinels("chat.update")
        in_thread = [(p.args["text"], p.args["thread_ts"]) for p in posts]
        assert in_thread == [(THINKING, thread_ts)] * (PEOPLE + 1)
        placeholders = Counter(u.args["ts"] for u in updates)
        assert len(updates) == PEOPLE + 1 and set(placeholders.values()) == {1}
        assert placeholders.keys() == set(slack.posted_ts)
        answers = Counter(u.args["text"] for u in updates)
        expected = ["echo: ideas for the offsite please", *(f"echo: {t}" for t in said.values())]
        assert answers == Counter(expected)
        # Both replicas answered some (the late retries guarantee it; races decide the rest).
        by_replica = Counter(u.token for u in updates)
        assert set(by_replica) == {r.token for r in replicas}, by_replica

        # The checkpoint holds every message, each followed by its own answer.
        async with AsyncPostgresSaver.from_conn_string(scale_db) as saver:
            thread_id = thread_key("T1", "C1", thread_ts)
            saved = await saver.aget_tuple({"configurable": {"thread_id": thread_id}})
        assert saved is not None
        messages = thread_state(saved.checkpoint["channel_values"][PREVIOUS_CHANNEL])["messages"]
        assert len(messages) == 2 * (PEOPLE + 1)
        questions, replies = messages[::2], messages[1::2]
        assert all(isinstance(m, HumanMessage) for m in questions)
        assert all(isinstance(m, AIMessage) for m in replies)
        assert Counter(m.content for m in questions) == Counter(
            ["ideas for the offsite please", *said.values()]
        )
        assert [r.content for r in replies] == [f"echo: {q.content}" for q in questions]

    for replica, code in zip(replicas, codes, strict=True):
        stderr = replica.stderr()
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
        assert code == 0, stderr  # SIGTERM is a clean shutdown
