"""Starting `membot run` as a Slack HTTP-mode replica against the local fakes and one
Postgres: shared by the two-process test (tests/test_scale.py) and bench/scale_bench.py.

Each replica gets its own data directory (its own embedded memory store) and port; the
checkpoints, turn locks, event claims and journal are shared through Postgres.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack


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
