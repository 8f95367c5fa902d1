"""Start-up checks of the `membot` command: settings that cannot work fail before anything
starts, as one `ConfigError` line and exit status 2.

Without them a bad setting surfaced minutes later or never: a data directory that cannot
be written failed inside SQLite with a traceback, and a Slack bot token without its
app token or signing secret silently opened the console, which exits at once in a
container, so the container restarted forever with status 0 and no word of why. The
engine raises `ConfigError` for what only it can see (store, embedder); these are the
checks that need nothing but the settings.
"""

from __future__ import annotations

import sys
import tempfile

from engine.errors import ConfigError
from engine.settings import Settings

EXIT_CONFIG = 2  # like argparse's usage errors: the invocation is wrong, not the program


def check_data_dir(settings: Settings) -> None:
    """MEMBOT_DATA_DIR must be a directory membot can create and write (store, conversation
    database, journal, locks all live there)."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A real write: `os.access` says yes to root on a read-only mount.
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            "MEMBOT_DATA_DIR",
            f"MEMBOT_DATA_DIR={path} is not a writable directory ({reason}). Set "
            "MEMBOT_DATA_DIR to a directory membot may create and write (default: data, "
            "in the working directory).",
        ) from err


def check_platforms(settings: Settings) -> None:
    """Half a platform configuration is a mistake, not a request for the console: `membot
    run` without any platform opens the console, which in a container exits at once."""
    bot_token = settings.slack_bot_token is not None
    app_token = settings.slack_app_token is not None
    secret = settings.slack_signing_secret is not None
    if bot_token and not (app_token or secret):
        raise ConfigError(
            "SLACK_APP_TOKEN",
            "SLACK_BOT_TOKEN is set, but neither SLACK_APP_TOKEN (Socket Mode, xapp-...) nor "
            "SLACK_SIGNING_SECRET (HTTP events) is. Set one of them, or unset "
            "SLACK_BOT_TOKEN to run without Slack.",
        )
    if (app_token or secret) and not bot_token:
        given = " and ".join(
            name
            for name, present in (("SLACK_APP_TOKEN", app_token), ("SLACK_SIGNING_SECRET", secret))
            if present
        )
        raise ConfigError(
            "SLACK_BOT_TOKEN",
            f"{given} {'are' if app_token and secret else 'is'} set, but SLACK_BOT_TOKEN is "
            f"not. Set SLACK_BOT_TOKEN=xoxb-... (OAuth & Permissions), or unset {given} to "
            "run without Slack.",
        )


def check_model_keys(settings: Settings) -> None:
    """An explicitly chosen chat model needs its key; `auto` falls back by design."""
    needs = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
    provider = settings.llm_provider
    if provider not in needs:
        return
    key = settings.anthropic_api_key if provider == "anthropic" else settings.openai_api_key
    if key is None:
        raise ConfigError(
            needs[provider],
            f"MEMBOT_LLM_PROVIDER={provider} needs {needs[provider]}. Set it, or set "
            "MEMBOT_LLM_PROVIDER=auto (the offline model when no key is set).",
        )


def report(error: ConfigError) -> int:
    """Print `error` as the command's one line on stderr; the exit status to return."""
    print(f"membot: configuration error: {error.line}", file=sys.stderr)
    return EXIT_CONFIG
