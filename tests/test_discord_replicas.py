"""Two `membot run` processes serve one Discord bot, and each message is answered once.

Run with one token and no sharding, two processes each hold a gateway connection, and
Discord sends every event to both. Here both run against one fake Discord (which does
the same) and one fake Anthropic API (echo replies, so an answer names its message),
each with its own data directory (its own embedded memory store), sharing a fresh
Postgres database for checkpoints, turn locks, the journal and the inbox (a database
created for the test, dropped afterwards). People write mentions and DMs and use /ask;
every event reaches both processes. Then:

- every message got exactly one reply, its own echo, and the other process found it
  taken on already; every /ask exactly one follow-up, and Discord saw one
  acknowledgement accepted and the other refused (40060);
- both processes stop cleanly on SIGTERM, with no error logged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.memory.manager import MEMORY_TOOL
from tests.fakes.discord import (
    ADMIN_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    MEMBER_ID,
    Call,
    FakeDiscord,
)
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.fakes.waits import WAIT, eventually
from tests.replicas import free_port, fresh_database

MESSAGES, ASKS = 12, 4
ORIGINAL = "/webhooks/{app}/{token}/messages/@original"
START_SECONDS = 120  # `membot run` loads the local sentence model first; slow when busy

pytestmark = pytest.mark.timeout(300)  # a hang fails in bounded time


def model(body: dict[str, Any]) -> str | ToolUse:
    """Chat: echo the user's message. Memory extraction: nothing worth keeping."""
    if body.get("tools"):
        return ToolUse(MEMORY_TOOL.name, {"operations": []})
    return echo_reply(body)


@pytest.fixture
async def replica_db() -> AsyncIterator[str]:
    async with fresh_database("membot_dscale") as url:
        yield url


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


async def start(name: str, tmp_path: Path, db_url: str, fake: FakeDiscord, llm: FakeLLM) -> Replica:
    """`membot run` with only these settings (none inherited from the caller's env);
    stderr goes to a file, and the working directory is the log's (no stray .env)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMBOT_", "SLACK_", "DISCORD_", "ANTHROPIC_", "OPENAI_"))
    }
    env |= {
        "MEMBOT_DATA_DIR": str(tmp_path / name),
        "MEMBOT_CHECKPOINT_URL": db_url,
        "MEMBOT_SCHEDULER_ENABLED": "false",
        "MEMBOT_LLM_PROVIDER": "anthropic",
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": llm.anthropic_url,
        "DISCORD_TOKEN": fake.token,
        "MEMBOT_DISCORD_API_URL": fake.api_base,
        "MEMBOT_DISCORD_GATEWAY_URL": fake.gateway_url,
        "MEMBOT_HTTP_HOST": "127.0.0.1",
        "MEMBOT_HTTP_PORT": str(free_port()),  # each process serves its ops endpoints
        "MEMBOT_CONTEXT_TOKEN_BUDGET": "1000000",  # nothing is summarised away
        "MEMBOT_LOG_LEVEL": "INFO",  # to count the deliveries each process turned down
    }
    log = tmp_path / f"{name}.stderr"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("membot")),
            "run",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    return Replica(process, log)


async def until_connected(fake: FakeDiscord, replica: Replica, connections: int) -> None:
    """Wait until `connections` clients are identified and ready (this one among them)."""

    async def connected() -> bool:
        if replica.process.returncode is not None:
            pytest.fail(f"membot run exited early:\n{replica.stderr()}", pytrace=False)
        try:
            await fake.ready(timeout=0.05, connections=connections)
        except TimeoutError:
            return False
        return True

    await eventually(connected, timeout=START_SECONDS, what=f"{connections} connection(s)")


async def stop(replica: Replica) -> int:
    if replica.process.returncode is None:
        replica.process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(replica.process.wait(), WAIT)
    except TimeoutError:
        replica.process.kill()
        await replica.process.wait()
        pytest.fail(f"no exit {WAIT:g} s after SIGTERM:\n{replica.stderr()}", pytrace=False)


def all_echoed(fake: FakeDiscord, messages: list[dict], asks: list[dict]) -> bool:
    """Each message's reply, and each /ask's response, shows its echo in full."""
    shown: dict[str, str] = {}
    for post in fake.calls_to("POST", "/channels/{channel_id}/messages"):
        ref = str(((post.json or {}).get("message_reference") or {}).get("message_id"))
        shown[ref] = fake.messages[fake.made_by(post)]["content"]
    for callback in fake.calls_to("POST", "/interactions/{id}/{token}/callback"):
        if (made := fake.made_by(callback)) is not None:
            shown[callback.path.split("/")[2]] = fake.messages[made]["content"]
    said = [(e["id"], e["content"].split("> ", 1)[-1]) for e in messages]
    said += [(e["id"], e["data"]["options"][0]["value"]) for e in asks]
    return all(shown.get(key) == f"echo: {text}" for key, text in said)


async def test_two_replicas_answer_each_message_once(tmp_path: Path, replica_db: str) -> None:
    async with FakeDiscord() as fake, FakeLLM(model) as llm:
        replicas: list[Replica] = []
        try:
            # One after the other: two processes creating the tables of an empty database
            # at once can race (CREATE TABLE IF NOT EXISTS is not concurrency-safe).
            for n, name in enumerate("ab", 1):
                replicas.append(await start(name, tmp_path, replica_db, fake, llm))
                await until_connected(fake, replicas[-1], connections=n)
            await fake.wait_for("PUT", "/applications/{app}/commands", count=2, timeout=WAIT)

            messages = [
                fake.message_create(
                    ADMIN_ID, f"mention {n}", channel_id=CHANNEL_ID, mentions_bot=True
                )
                if n % 2
                else fake.message_create(MEMBER_ID, f"direct {n}", channel_id=DM_CHANNEL_ID)
                for n in range(MESSAGES)
            ]
            asks = [
                fake.interaction_create(
                    "ask", {"question": f"question {n}"}, user=MEMBER_ID, channel_id=CHANNEL_ID
                )
                for n in range(ASKS)
            ]
            for event in messages:
                assert await fake.dispatch("MESSAGE_CREATE", event)
            for event in asks:
                assert await fake.dispatch("INTERACTION_CREATE", event)
            for event in messages:
                await fake.wait_for_reply(event, timeout=WAIT)
            for event in asks:  # answered in its response (the deferred message), edited
                await fake.wait_for(
                    "PATCH", ORIGINAL, where=lambda c, e=event: e["token"] in c.path
                )
            # A sentinel: by the time a later message is answered, any second answer to
            # the ones before (from either process) would have been posted.
            sentinel = fake.message_create(MEMBER_ID, "are you there?", channel_id=DM_CHANNEL_ID)
            await fake.dispatch("MESSAGE_CREATE", sentinel)
            await fake.wait_for_reply(sentinel, timeout=WAIT)
            # Answers stream: each is posted with its first words, then edited to the whole.
            await eventually(lambda: all_echoed(fake, messages, asks), what="answers complete")
        finally:
            codes = await asyncio.gather(*(stop(r) for r in replicas))

        def replied_to(call: Call) -> str:
            return str(((call.json or {}).get("message_reference") or {}).get("message_id"))

        posts = fake.calls_to("POST", "/channels/{channel_id}/messages")
        answers = Counter(replied_to(p) for p in posts)
        assert answers == Counter([e["id"] for e in messages] + [sentinel["id"]])
        for event in asks:
            calls = [c for c in fake.calls if event["token"] in c.path]
            callbacks = [c for c in calls if c.path.endswith("/callback")]
            answering = [c for c in calls if not c.path.endswith("/callback")]
            assert len(callbacks) == 2  # both processes tried; Discord accepted one
            assert answering and all(c.path.endswith("/@original") for c in answering)

    logs = "".join(r.stderr() for r in replicas)
    assert logs.count("was taken on before; not answered again") == MESSAGES + 1
    for replica, code in zip(replicas, codes, strict=True):
        stderr = replica.stderr()
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
        assert code == 0, stderr  # SIGTERM is a clean shutdown
