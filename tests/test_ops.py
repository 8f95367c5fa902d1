"""Operations: /healthz, /readyz and /metrics over real HTTP, metrics from real turns,
JSON logs, and what is never logged.

Servers run on 127.0.0.1 for real; "Postgres went away" is a TCP proxy in front of the
shared server that the test stops, so the database itself keeps running for everyone.
"""

# The helpers take `timeout=` because tests read better that way.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bots.ops import start_ops
from bots.slack import SlackAdapter
from engine import metrics
from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack, message
from tests.fakes.waits import WAIT

POSTGRES = os.environ.get("MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "test-signing-secret"
BOT_TOKEN = "xoxb-ops-test-7f3a9c2e"
PRIVATE_TEXT = "remember: my locker code is aardvark-quartz-5831"


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    """The registry lives as long as the process: start each test from empty label sets."""
    labelled = (
        metrics.MESSAGES,
        metrics.LLM_SECONDS,
        metrics.LLM_ERRORS,
        metrics.MEMORY_WRITES,
        metrics.STORE_SECONDS,
    )
    for metric in labelled:
        metric.clear()


@pytest.fixture
async def bot(tmp_path: Path, local_embeddings) -> AsyncIterator[MemoryBot]:
    settings = Settings(data_dir=tmp_path, llm_provider="offline")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        yield bot


@contextlib.asynccontextmanager
async def ops_server(bot: MemoryBot) -> AsyncIterator[str]:
    runner = await start_ops(bot, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WAIT)) as session:
        yield session


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


async def ready(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, str]]:
    status, content_type, body = await get(http, f"{base}/readyz")
    assert content_type.startswith("application/json")
    return status, json.loads(body)


async def scrape(http: aiohttp.ClientSession, base: str) -> tuple[str, dict[tuple, float]]:
    """The /metrics text and its samples by (name, sorted labels)."""
    status, content_type, text = await get(http, f"{base}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain") and "version=" in content_type
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- endpoints --------------------------------------------------------------------------


async def test_healthz_and_readyz_with_sqlite_and_the_embedded_store(bot, http) -> None:
    async with ops_server(bot) as base:
        assert await get(http, f"{base}/healthz") == (200, "text/plain; charset=utf-8", "ok")
        assert await ready(http, base) == (200, {"store": "ok", "checkpointer": "ok"})


async def test_metrics_count_a_turn_and_never_carry_ids_or_text(bot, http) -> None:
    async with ops_server(bot) as base:
        _, before = await scrape(http, base)
        reply = await bot.chat(user_id="console:alice", thread_id="console:t1", text=PRIVATE_TEXT)
        assert not reply.error
        await bot.chat(user_id="console:alice", thread_id="console:t1", text="   ")  # refused
        await bot.flush_memories()
        text, after = await scrape(http, base)

    assert 'membot_messages_total{outcome="ok"} 1.0' in text.splitlines()
    assert after[("membot_messages_total", (("outcome", "refused"),))] == 1
    count = ("membot_reply_seconds_count", ())
    assert after[count] - before.get(count, 0) == 1  # refusals are not timed
    assert after[("membot_store_seconds_count", (("op", "recall"),))] == 1
    assert after[("membot_memory_writes_total", (("action", "added"),))] == 1
    assert "alice" not in text and "aardvark" not in text and "console:" not in text


async def test_a_failing_llm_counts_an_error(tmp_path, local_embeddings, http) -> None:
    async with FakeLLM() as llm:
        settings = Settings(
            data_dir=tmp_path,
            llm_provider="anthropic",
            anthropic_api_key="k",
            anthropic_base_url=llm.anthropic_url,
        )
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            async with ops_server(bot) as base:
                llm.fail(500, times=3)  # the first try and both SDK retries
                failed = await bot.chat(user_id="u1", thread_id="t1", text="are you there?")
                assert failed.error
                ok = await bot.chat(user_id="u1", thread_id="t1", text="and now?")
                assert not ok.error
                text, samples = await scrape(http, base)

    errors = ("membot_llm_errors_total", (("error_type", "api_error"), ("provider", "anthropic")))
    assert samples[errors] == 1
    assert samples[("membot_messages_total", (("outcome", "error"),))] == 1
    assert samples[("membot_messages_total", (("outcome", "ok"),))] == 1
    chat_calls = ("membot_llm_seconds_count", (("provider", "anthropic"), ("purpose", "chat")))
    assert samples[chat_calls] == 2
    assert "are you there" not in text and "user_id" not in text


# --- readiness against Postgres ---------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `stop()` is the database going away (the
    listener closes and every open connection is cut), `start()` brings it back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()  # both directions see the connection drop
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            pass  # the target is down: the client sees its connection close
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.transport.abort()
                    self._writers.discard(w)
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


async def until_ready(http, base: str, timeout: float) -> tuple[int, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await ready(http, base)
        if status == 200 or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.5)


async def test_readyz_names_the_checkpointer_when_postgres_goes_away(
    tmp_path, local_embeddings, http, monkeypatch
) -> None:
    target = urlsplit(POSTGRES)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.start()
    netloc = target.netloc.rsplit("@", 1)
    user = f"{netloc[0]}@" if len(netloc) == 2 else ""
    via_proxy = urlunsplit(target._replace(netloc=f"{user}127.0.0.1:{proxy.port}"))
    monkeypatch.setenv("MEMBOT_CHECKPOINT_URL", via_proxy)
    settings = Settings(data_dir=tmp_path, llm_provider="offline")
    assert settings.checkpoint_url == via_proxy
    try:
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            async with ops_server(bot) as base:
                assert await ready(http, base) == (200, {"store": "ok", "checkpointer": "ok"})

                await proxy.stop()
                # Answered at all (the session gives up after WAIT): the check has a timeout.
                status, body = await ready(http, base)
                assert status == 503
                assert body["store"] == "ok"
                assert body["checkpointer"].startswith("error: ")
                assert "127.0.0.1" not in json.dumps(body) and "postgres" not in json.dumps(body)
                assert (await get(http, f"{base}/healthz"))[::2] == (200, "ok")  # alive

                await proxy.start()  # same port: the pool reconnects by itself
                assert await until_ready(http, base, timeout=WAIT) == (
                    200,
                    {"store": "ok", "checkpointer": "ok"},
                )
    finally:
        if proxy._server is not None:
            await proxy.stop()


# --- Slack: one server, and nothing private in the logs ---------------------------------


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET) as fake:
        fake.users["U1"] = {"id": "U1", "is_admin": False, "is_owner": False, "team_id": "T1"}
        yield fake


@contextlib.asynccontextmanager
async def slack_http(bot: MemoryBot, settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """The adapter's HTTP-mode app on a free port: (events URL, base URL)."""
    adapter = SlackAdapter(bot, settings)
    runner = web.AppRunner(adapter.web_app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield f"{base}/slack/events", base
    finally:
        await runner.cleanup()
        await adapter.aclose()


def slack_settings(tmp_path: Path, slack: FakeSlack) -> Settings:
    return Settings(
        data_dir=tmp_path,
        llm_provider="offline",
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SECRET,
        slack_api_url=slack.api_url,
    )


async def test_slack_http_mode_serves_ops_on_the_events_port(
    slack, tmp_path, local_embeddings, http
) -> None:
    settings = slack_settings(tmp_path, slack)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        async with slack_http(bot, settings) as (events, base):
            await slack.post_event(events, message("U1", "hello"))
            (update,) = await slack.wait_for("chat.update")
            assert update.args["text"].startswith("[offline]")
            assert (await get(http, f"{base}/healthz"))[::2] == (200, "ok")
            assert await ready(http, base) == (200, {"store": "ok", "checkpointer": "ok"})
            text, _ = await scrape(http, base)
            assert 'membot_messages_total{outcome="ok"} 1.0' in text.splitlines()


async def test_a_slack_turn_logs_neither_the_text_nor_the_token_at_info(
    slack, tmp_path, local_embeddings, caplog
) -> None:
    caplog.set_level(logging.INFO)
    settings = slack_settings(tmp_path, slack)
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        async with slack_http(bot, settings) as (events, _):
            await slack.post_event(events, message("U1", PRIVATE_TEXT))
            (update,) = await slack.wait_for("chat.update")
            memories = await bot.memories("slack:T1:U1")  # the learning ran (and logged)
    assert update.args["text"].startswith("[offline]")
    assert ["aardvark" in m.value["text"] for m in memories] == [True]  # it was read
    assert "engine.memory.manager" in {record.name for record in caplog.records}
    assert "aardvark" not in caplog.text and "locker code" not in caplog.text
    assert BOT_TOKEN not in caplog.text and SECRET not in caplog.text


# --- logging setup ----------------------------------------------------------------------


def test_json_logging_writes_one_object_per_record(tmp_path: Path) -> None:
    script = (
        "import logging\n"
        "from bots.cli import configure_logging\n"
        "from engine.settings import Settings\n"
        "configure_logging('info', Settings().log_format)\n"
        "logging.getLogger('membot.test').info('plain %s', 'record')\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    logging.getLogger('membot.test').exception('it failed')\n"
    )
    env = {**os.environ, "MEMBOT_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    plain, failed = [json.loads(line) for line in done.stderr.splitlines()]
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["level"] == "INFO" and plain["logger"] == "membot.test"
    assert plain["message"] == "plain record"
    assert plain["time"].endswith("+00:00")
    assert failed["level"] == "ERROR" and failed["message"] == "it failed"
    assert "ZeroDivisionError" in failed["exception"]


# --- `membot run` -----------------------------------------------------------------------


def membot_env(tmp_path: Path, slack: FakeSlack, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMBOT_", "SLACK_"))}
    return env | {
        "MEMBOT_DATA_DIR": str(tmp_path),
        "MEMBOT_LLM_PROVIDER": "offline",
        "MEMBOT_SLACK_API_URL": slack.api_url,
        "MEMBOT_HTTP_HOST": "127.0.0.1",
        "MEMBOT_HTTP_PORT": str(port),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        **extra,
    }


async def until_up(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(aiohttp.ClientConnectionError):
            async with http.get(url) as resp:
                if resp.status == 200:
                    return
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout}s"
        await asyncio.sleep(0.25)


async def run_membot(env: dict[str, str]) -> asyncio.subprocess.Process:
    membot = str(Path(sys.executable).with_name("membot"))
    return await asyncio.create_subprocess_exec(
        membot, "run", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )


async def stop(process: asyncio.subprocess.Process) -> str:
    process.terminate()
    _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return stderr.decode()


async def test_membot_run_serves_ops_beside_socket_mode(slack, tmp_path, http) -> None:
    port = free_port()
    process = await run_membot(membot_env(tmp_path, slack, port, SLACK_APP_TOKEN="xapp-test"))
    try:
        await slack.connected(timeout=120)
        await until_up(http, f"http://127.0.0.1:{port}/healthz", timeout=WAIT)
        assert (await ready(http, f"http://127.0.0.1:{port}"))[0] == 200
    finally:
        stderr = await stop(process)
    assert "Traceback" not in stderr


async def test_membot_run_in_slack_http_mode_runs_one_server_with_json_logs(
    slack, tmp_path, http
) -> None:
    port = free_port()
    env = membot_env(
        tmp_path,
        slack,
        port,
        SLACK_SIGNING_SECRET=SECRET,
        MEMBOT_LOG_FORMAT="json",
        MEMBOT_LOG_LEVEL="INFO",
    )
    process = await run_membot(env)
    base = f"http://127.0.0.1:{port}"
    try:
        await until_up(http, f"{base}/healthz", timeout=120)
        await slack.post_event(f"{base}/slack/events", message("U1", PRIVATE_TEXT))
        (update,) = await slack.wait_for("chat.update")
        assert update.args["text"].startswith("[offline]")
        _, samples = await scrape(http, base)
        assert samples[("membot_messages_total", (("outcome", "ok"),))] == 1
    finally:
        stderr = await stop(process)
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [record["message"] for record in records]
    assert any("HTTP mode on port" in m for m in messages), stderr
    assert not any("cannot listen" in m for m in messages), stderr  # no second server
    assert "aardvark" not in stderr and BOT_TOKEN not in stderr and SECRET not in stderr
