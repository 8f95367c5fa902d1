"""A configuration mistake is one line on stderr naming the variable and the fix, exit 2.

The `membot` command runs as a subprocess, the way an operator or a container sees it:
a clean environment (no keys from the developer's shell), its own data directory and
`cwd=tmp_path`, so no `.env` of the checkout leaks in. Nothing here reaches a network:
Qdrant is a closed local port, Discord a local server that answers 401. The embedder
switch (a store built offline, then an OpenAI key appears) runs in-process.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
from pydantic import SecretStr

import engine.embeddings.openai
from engine.bot import MemoryBot
from engine.embeddings import make_embeddings
from engine.embeddings.local import LocalEmbeddings
from engine.embeddings.record import RECORD_FILE
from engine.errors import ConfigError, find_config_error
from engine.settings import Settings, _describe_problem
from engine.store import EdgeStore
from engine.store.factory import index_config, open_store

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120  # a loaded machine loads the local model slowly; never a timing assertion


def free_port() -> int:
    """A port nothing listens on (bound, read, closed): connecting to it fails at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def membot(
    tmp_path: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """`membot ARGS` with only `env` configured (offline model, data in tmp_path)."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(ROOT),
        "MEMBOT_DATA_DIR": str(tmp_path / "data"),
        "MEMBOT_LLM_PROVIDER": "offline",
        "MEMBOT_HTTP_PORT": str(free_port()),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        cwd=tmp_path,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str], *variables: str) -> str:
    """Exit 2, no traceback, stderr exactly one line naming every one of `variables`."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("membot: configuration error: "), line
    for variable in variables:
        assert variable in line, line
    return line


# -- settings ------------------------------------------------------------------------


def test_invalid_value_names_the_variable_and_what_is_expected(tmp_path: Path) -> None:
    line = one_line_error(membot(tmp_path, "run", MEMBOT_MEMORY_TOP_K="abc"), "MEMBOT_MEMORY_TOP_K")
    assert "memory_top_k" not in line  # the variable, not pydantic's field name
    assert "'abc'" in line and "valid integer" in line


def test_out_of_range_value_says_the_bound(tmp_path: Path) -> None:
    line = one_line_error(
        membot(tmp_path, "chat", MEMBOT_MEMORY_TOP_K="500"), "MEMBOT_MEMORY_TOP_K"
    )
    assert "less than or equal to 100" in line


def test_vendor_variable_in_dotenv_is_named_as_written(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_GUILD_ID=my-server\n")
    line = one_line_error(membot(tmp_path, "run"), "DISCORD_GUILD_ID='my-server'")
    assert "MEMBOT_DISCORD_GUILD_ID" not in line


def test_variables_come_from_the_settings_fields() -> None:
    assert Settings.env_names("memory_top_k") == ("MEMBOT_MEMORY_TOP_K",)
    assert Settings.env_names("slack_bot_token") == ("MEMBOT_SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN")


def test_secret_values_are_not_echoed() -> None:
    problem = {"loc": ("MEMBOT_SLACK_BOT_TOKEN",), "msg": "Input is odd", "input": "xoxb-42"}
    variable, text = _describe_problem(problem)
    assert variable in ("MEMBOT_SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN")
    assert "xoxb-42" not in text and "input is odd" in text


def test_unknown_log_level(tmp_path: Path) -> None:
    one_line_error(membot(tmp_path, "run", MEMBOT_LOG_LEVEL="LOUD"), "MEMBOT_LOG_LEVEL")


def test_explicit_chat_model_without_its_key(tmp_path: Path) -> None:
    result = membot(tmp_path, "run", MEMBOT_LLM_PROVIDER="anthropic")
    one_line_error(result, "MEMBOT_LLM_PROVIDER", "ANTHROPIC_API_KEY")


# -- data directory ------------------------------------------------------------------


def test_data_dir_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    result = membot(tmp_path, "run", MEMBOT_DATA_DIR=str(tmp_path / "file" / "data"))
    assert "Not a directory" in one_line_error(result, "MEMBOT_DATA_DIR")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    try:
        one_line_error(membot(tmp_path, "chat", MEMBOT_DATA_DIR=str(data)), "MEMBOT_DATA_DIR")
    finally:
        data.chmod(0o755)


# -- platforms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"SLACK_BOT_TOKEN": "xoxb-1"}, ("SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET")),
        ({"SLACK_APP_TOKEN": "xapp-1"}, ("SLACK_BOT_TOKEN",)),
        ({"SLACK_SIGNING_SECRET": "s3cret"}, ("SLACK_BOT_TOKEN",)),
        ({"MEMBOT_SLACK_APP_TOKEN": "xapp-1", "SLACK_SIGNING_SECRET": "x"}, ("SLACK_BOT_TOKEN",)),
    ],
)
def test_partial_slack_configuration_is_an_error_not_the_console(
    tmp_path: Path, given: dict[str, str], named: tuple[str, ...]
) -> None:
    # Before: the console opened, read EOF and exited 0 (a container's restart loop).
    line = one_line_error(membot(tmp_path, "run", **given), *named)
    assert "s3cret" not in line and "xapp-1" not in line


class _RefusingDiscord(http.server.BaseHTTPRequestHandler):
    """Discord's REST API for a revoked token: every request is 401."""

    def do_GET(self) -> None:
        body = json.dumps({"message": "401: Unauthorized", "code": 0}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def refusing_discord() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusingDiscord)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v10"
    finally:
        server.shutdown()
        server.server_close()


def test_invalid_discord_token(tmp_path: Path, refusing_discord: str) -> None:
    result = membot(
        tmp_path, "run", DISCORD_TOKEN="revoked", MEMBOT_DISCORD_API_URL=refusing_discord
    )
    assert "Traceback" not in result.stderr and "ExceptionGroup" not in result.stderr
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Before the adapters start the command prints its status banner, and discord.py
    # warns about voice support; the error itself is one line, the last.
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == [lines[-1]], result.stderr
    assert lines[-1].startswith("membot: configuration error: ")
    assert "DISCORD_TOKEN" in lines[-1] and "revoked" not in lines[-1]


# -- memory store --------------------------------------------------------------------


def test_unreachable_qdrant_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(membot(tmp_path, "run", MEMBOT_QDRANT_URL=url), "MEMBOT_QDRANT_URL")
    assert url in line


def test_qdrant_url_that_is_not_one(tmp_path: Path) -> None:
    one_line_error(membot(tmp_path, "chat", MEMBOT_QDRANT_URL="ftp://qdrant"), "MEMBOT_QDRANT_URL")


def _old_local_store(data_dir: Path, local_embeddings: tuple[LocalEmbeddings, int]) -> None:
    """An embedded store as made before embedders were recorded: 384-dim, no record."""
    EdgeStore.open(data_dir / "qdrant", index=index_config(*local_embeddings)).close()
    assert not (data_dir / "qdrant" / RECORD_FILE).exists()


def test_explicit_provider_against_the_store(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    _old_local_store(tmp_path / "data", local_embeddings)
    result = membot(tmp_path, "chat", MEMBOT_EMBEDDING_PROVIDER="openai", OPENAI_API_KEY="sk-test")
    line = one_line_error(result, "MEMBOT_EMBEDDING_PROVIDER")
    assert "local embeddings (all-MiniLM-L6-v2, 384 dims)" in line


def test_a_key_appearing_keeps_the_stores_embedder_from_the_command(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    _old_local_store(tmp_path / "data", local_embeddings)
    result = membot(tmp_path, "chat", stdin="/quit\n", OPENAI_API_KEY="sk-test")
    assert result.returncode == 0, result.stderr
    assert "(local embeddings)" in result.stdout  # the banner says what is used
    [warning] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "WARNING" in warning and "MEMBOT_EMBEDDING_PROVIDER" in warning


def _no_openai_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenAI is unreachable here: building its embedder at all is the bug."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the OpenAI embedder was built")

    monkeypatch.setattr(engine.embeddings.openai.OpenAIEmbeddings, "__init__", refuse)


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "inferred-from-dims"])
async def test_auto_keeps_the_embedder_the_store_was_built_with(
    tmp_path: Path,
    local_embeddings: tuple[LocalEmbeddings, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    recorded: bool,
) -> None:
    offline = Settings(data_dir=tmp_path, llm_provider="offline")
    async with MemoryBot.open(offline, embeddings=local_embeddings) as bot:
        await bot.remember("u.1", "my name is Ann")
    assert json.loads((tmp_path / "qdrant" / RECORD_FILE).read_text()) == {
        "provider": "local",
        "model": "all-MiniLM-L6-v2",
        "dims": 384,
    }
    if not recorded:  # a store from before the record: its 384 dims say "local"
        (tmp_path / "qdrant" / RECORD_FILE).unlink()

    _no_openai_embedder(monkeypatch)
    with_key = Settings(
        data_dir=tmp_path, llm_provider="offline", openai_api_key=SecretStr("sk-test")
    )
    assert with_key.embedding_provider == "auto"
    assert with_key.resolved_embedding_provider() == "openai"  # what used to break it
    with caplog.at_level(logging.WARNING, logger="engine.embeddings"):
        async with MemoryBot.open(with_key) as bot:
            reply = await bot.chat(user_id="u.1", thread_id="t", text="what is my name?")
    assert "Ann" in reply.text
    [warning] = [r for r in caplog.records if r.name == "engine.embeddings"]
    assert "MEMBOT_EMBEDDING_PROVIDER=openai" in warning.getMessage()
    assert (tmp_path / "qdrant" / RECORD_FILE).exists()  # written for an old store too


def test_explicit_provider_contradicting_the_record(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    _old_local_store(tmp_path, local_embeddings)
    explicit = Settings(
        data_dir=tmp_path, embedding_provider="openai", openai_api_key=SecretStr("sk-test")
    )
    with pytest.raises(ConfigError) as raised:
        make_embeddings(explicit)
    assert raised.value.variable == "MEMBOT_EMBEDDING_PROVIDER"


def test_openai_store_needs_its_key_model_and_size(tmp_path: Path) -> None:
    store = tmp_path / "qdrant"
    store.mkdir()
    (store / RECORD_FILE).write_text(
        json.dumps({"provider": "openai", "model": "text-embedding-3-small", "dims": 1536})
    )
    cases = [
        ({}, "OPENAI_API_KEY"),
        ({"openai_api_key": SecretStr("k"), "openai_embedding_dims": 512}, "DIMS"),
        ({"openai_api_key": SecretStr("k"), "openai_embedding_model": "other"}, "MODEL"),
        ({"openai_api_key": SecretStr("k"), "embedding_provider": "local"}, "PROVIDER"),
    ]
    for overrides, variable in cases:
        with pytest.raises(ConfigError) as raised:
            make_embeddings(Settings(data_dir=tmp_path, **overrides))
        assert raised.value.variable.endswith(variable)


def test_a_config_error_is_found_inside_task_groups() -> None:
    error = ConfigError("DISCORD_TOKEN", "bad\ntoken")
    nested = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [error])])
    assert find_config_error(nested) is error
    assert error.line == "bad token"
    try:
        raise RuntimeError("wrapped") from error
    except RuntimeError as wrapped:
        assert find_config_error(wrapped) is error
    assert find_config_error(ValueError("unrelated")) is None


# -- help and version ----------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = membot(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"membot {version('membot')}"


def test_help_explains_commands_and_data(tmp_path: Path) -> None:
    result = membot(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for word in ("run", "chat", "migrate", "MEMBOT_DATA_DIR", "qdrant/", "checkpoints.sqlite"):
        assert word in result.stdout
    assert "exit status 2" in result.stdout


async def test_old_store_of_an_unknown_size(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    """Neither 384 (local) nor the configured OpenAI size: no guess, the store's own size
    check, reported as the setting to fix."""
    embedder, _ = local_embeddings
    EdgeStore.open(tmp_path / "qdrant", index=index_config(embedder, 16)).close()
    with pytest.raises(ConfigError) as raised:
        async with open_store(Settings(data_dir=tmp_path), embedder, 384):
            pass
    assert raised.value.variable == "MEMBOT_EMBEDDING_PROVIDER"
    assert "16-dim" in raised.value.line and "384-dim" in raised.value.line
