"""Starting `membot run` as a Slack HTTP-mode replica against the local fakes and one
Postgres, and a fresh database for replicas to share: used by the two-process tests
(tests/test_scale.py, tests/test_discord_replicas.py) and bench/scale_bench.py.

Each replica gets its own data directory (its own embedded memory store) and port; the
checkpoints, turn locks, inbox and journal are shared through Postgres.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from engine.checkpoint import describe_dsn
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack

POSTGRES_URL = os.environ.get(
    "MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@asynccontextmanager
async def fresh_database(prefix: str) -> AsyncIterator[str]:
    """A URL of a new database (`<prefix>_<hex>`, so replicas start on empty tables),
    dropped afterwards. Fails (never skips) without Postgres."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = await psycopg.AsyncConnection.connect(
            POSTGRES_URL, autocommit=True, connect_timeout=5
        )
    except psycopg.Error as err:
        pytest.fail(
            f"PostgreSQL is not reachable at {describe_dsn(POSTGRES_URL)} ({err}). "
            "Run .ci/postgres or set MEMBOT_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    async with admin:
        await admin.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}"))
    finally:
        async with await psycopg.AsyncConnection.connect(POSTGRES_URL, autocommit=True) as admin:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def spawn_replica(
    *,
    data_dir: Path,
    db_url: str,
    slack: FakeSlack,
    llm: FakeLLM,
    token: str,
    signing_secret: str,
    port: int,
    log: Path,
    **settings: str,
) -> asyncio.subprocess.Process:
    """`membot run` with only these settings (none inherited from the caller's env);
    extra `settings` are MEMBOT_<NAME> values. stderr goes to `log` (a file, not a pipe
    nobody reads while it runs); the working directory is the log's, so no stray .env."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMBOT_", "SLACK_", "ANTHROPIC_", "OPENAI_"))
    }
    env |= {
        "MEMBOT_DATA_DIR": str(data_dir),
        "MEMBOT_CHECKPOINT_URL": db_url,
        "MEMBOT_SCHEDULER_ENABLED": "false",
        "MEMBOT_LLM_PROVIDER": "anthropic",
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": llm.anthropic_url,
        "MEMBOT_SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": token,
        "SLACK_SIGNING_SECRET": signing_secret,
        "MEMBOT_HTTP_HOST": "127.0.0.1",
        "MEMBOT_HTTP_PORT": str(port),
    }
    env |= {f"MEMBOT_{name.upper()}": value for name, value in settings.items()}
    with log.open("wb") as stderr:
        return await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("membot")),
            "run",
            env=env,
            cwd=log.parent,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
