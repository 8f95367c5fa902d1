"""`membot run` as a process, stopped mid-turn: by SIGTERM (drained: the turn is answered,
exit 0) and by kill -9 (the next start answers it, once, in the placeholder already
posted). Slack HTTP mode against the fake Slack, the real Anthropic SDK against the fake
model (its answer held until the test lets it go), the embedded default stores.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from bots.slack import THINKING
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack, app_mention
from tests.replicas import free_port, spawn_replica

SECRET = "test-signing-secret"
WAIT = 90.0  # generous: the machine may be busy with another test run


def is_answer(body: dict) -> bool:
    return "tools" not in body  # the chat answer, not a memory extraction


async def start(tmp_path: Path, slack: FakeSlack, llm: FakeLLM, name: str):
    port = free_port()
    log = tmp_path / f"{name}.stderr"
    process = await spawn_replica(
        data_dir=tmp_path / "data",  # every start shares the embedded data directory
        db_url=str(tmp_path / "data" / "checkpoints.sqlite"),
        slack=slack,
        llm=llm,
        token="xoxb-test",
        signing_secret=SECRET,
        port=port,
        log=log,
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT):
        while True:
            if process.returncode is not None:
                pytest.fail(f"membot run exited early:\n{log.read_text()}", pytrace=False)
            try:
                async with http.get(f"{base}/healthz"):
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
    return process, base, log


async def until_draining(base: str) -> None:
    """`/readyz` says 503 "draining" once the SIGTERM handler has started the drain."""
    async with aiohttp.ClientSession() as http, asyncio.timeout(WAIT):
        while True:
            async with http.get(f"{base}/readyz") as response:
                if response.status == 503 and (await response.json()).get("shutdown"):
                    return
            await asyncio.sleep(0.05)


async def test_sigterm_mid_turn_drains_answers_and_exits_0(tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack, FakeLLM() as llm:
        held = llm.hold(is_answer)
        process, base, log = await start(tmp_path, slack, llm, "a")
        await slack.post_event(f"{base}/slack/events", app_mention("U1", "<@UBOT> hello there"))
        await held.arrived(WAIT)  # the model is answering
        process.send_signal(signal.SIGTERM)
        await until_draining(base)
        held.release()  # the answer comes after the SIGTERM, within the grace period
        code = await asyncio.wait_for(process.wait(), WAIT)
        assert code == 0, log.read_text()
        [update] = slack.calls_to("chat.update")
        assert update.args["text"] == "echo: hello there"
        assert "left for the restart" in log.read_text()


async def test_killed_mid_answer_is_answered_once_after_restart(tmp_path: Path) -> None:
    async with FakeSlack(signing_secret=SECRET) as slack, FakeLLM() as llm:
        held = llm.hold(is_answer)
        first, base, _ = await start(tmp_path, slack, llm, "a")
        mention = app_mention("U1", "<@UBOT> what's a good name for a cat?")
        await slack.post_event(f"{base}/slack/events", mention)
        await held.arrived(WAIT)
        [placeholder] = slack.calls_to("chat.postMessage")
        assert placeholder.args["text"] == THINKING
        first.kill()  # kill -9 while the model is answering
        await first.wait()
        assert slack.calls_to("chat.update") == []
        held.release()

        second, base, log = await start(tmp_path, slack, llm, "b")
        try:
            [update] = await slack.wait_for("chat.update", timeout=WAIT)
            # The dead process's placeholder becomes the answer: nothing left "Thinking…".
            assert update.args["text"] == "echo: what's a good name for a cat?"
            assert len(slack.calls_to("chat.postMessage")) == 1  # no second placeholder
            # Slack redelivering the message is not answered again; a later one is.
            await slack.post_event(f"{base}/slack/events", mention, retry_num=1)
            await slack.post_event(f"{base}/slack/events", app_mention("U1", "<@UBOT> thanks"))
            updates = await slack.wait_for("chat.update", count=2, timeout=WAIT)
            assert updates[1].args["text"] == "echo: thanks"
            assert len(slack.calls_to("chat.postMessage")) == 2  # one placeholder per message
        finally:
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), WAIT) == 0, log.read_text()
        assert len(slack.calls_to("chat.update")) == 2
