"""The `membot` command: `membot run` (the README's run command) and `membot chat`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from bots.config_errors import check_data_dir, check_model_keys, check_platforms, report
from bots.logs import configure_logging
from engine.bot import CHECKPOINT_FILE, MemoryBot
from engine.checkpoint import describe_dsn, is_postgres_url, sqlite_path
from engine.embeddings import embedding_provider
from engine.errors import ConfigError, find_config_error
from engine.scheduler import MemoryScheduler
from engine.settings import Settings, load_settings

HOW_TO_CONFIGURE = """No Slack or Discord credentials are configured, so here is the console chat.
To connect a platform, set (in the environment or a .env file) and run again:
  Slack:   SLACK_BOT_TOKEN=xoxb-... and SLACK_APP_TOKEN=xapp-... (Socket Mode)
           or SLACK_SIGNING_SECRET=... (HTTP events)
  Discord: DISCORD_TOKEN=...
For a language model set ANTHROPIC_API_KEY or OPENAI_API_KEY; without one the bot runs
offline and can only remember and recall what you tell it."""


def describe(bot: MemoryBot) -> str:
    settings = bot.settings
    model = "OFFLINE (no language model key set)" if bot.model.offline else bot.model.name
    store = (
        f"Qdrant server {settings.qdrant_url}"
        if settings.qdrant_url
        else f"embedded Qdrant in {settings.store_path}"
    )
    embedder, _ = embedding_provider(settings)  # the store's own under `auto`
    url = settings.checkpoint_url
    conversations = (
        f"Postgres {describe_dsn(url)}"
        if is_postgres_url(url)
        else str(sqlite_path(url, settings.data_dir / CHECKPOINT_FILE))
    )
    return (
        f"membot | model: {model} | memory: {store} ({embedder} embeddings) | "
        f"conversations: {conversations}"
    )


def slack_configured(settings: Settings) -> bool:
    return bool(
        settings.slack_bot_token and (settings.slack_app_token or settings.slack_signing_secret)
    )


@asynccontextmanager
async def scheduled_jobs(bot: MemoryBot) -> AsyncIterator[MemoryScheduler | None]:
    """The maintenance scheduler for the bot's lifetime (unless switched off)."""
    if not bot.settings.scheduler_enabled:
        yield None
        return
    scheduler = MemoryScheduler(bot, bot.locks)
    scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.aclose()


async def _chat(
    settings: Settings, user: str, thread: str, banner_extra: str = "", *, jobs: bool = False
) -> None:
    from bots.console import run_console

    async with MemoryBot.open(settings) as bot:
        banner = describe(bot) + (f"\n{banner_extra}" if banner_extra else "")
        if jobs:
            async with scheduled_jobs(bot):
                await run_console(bot, user=user, thread=thread, banner=banner)
        else:
            await run_console(bot, user=user, thread=thread, banner=banner)


async def _exported(settings: Settings, user: str) -> dict:
    async with MemoryBot.open(settings) as bot:
        return await bot.export_memories(user)


def _export(settings: Settings, user: str, out: str) -> int:
    """Everything held about `user` as JSON, to `out` ("-": standard output)."""
    document = asyncio.run(_exported(settings, user))
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    if out == "-":
        sys.stdout.write(text)
        return 0
    Path(out).write_text(text, encoding="utf-8")
    held = len(document["memories"]), len(document["episodes"])
    print(f"{out}: {held[0]} memories, {held[1]} messages of {user}")
    return 0


async def _imported(settings: Settings, document: dict, user: str | None) -> dict[str, int]:
    async with MemoryBot.open(settings) as bot:
        return await bot.import_memories(document, user_id=user)


def _import(settings: Settings, source: str, user: str | None) -> int:
    """Load an export (from `membot export`) into this install's store."""
    try:
        document = json.loads(Path(source).read_text(encoding="utf-8"))
        written = asyncio.run(_imported(settings, document, user))
    except (OSError, ValueError) as err:  # unreadable, not JSON, or not an export
        print(f"membot import: {source}: {err}", file=sys.stderr)
        return 2
    print(
        f"imported {written['memories']} memories, {written['episodes']} messages and "
        f"{written['history']} history entries"
    )
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM in the console cancels the main task, so the store is flushed and the
    checkpointer closed on the way out instead of dying mid-write."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def _serve(bot: MemoryBot, settings: Settings) -> list[asyncio.Task[None]]:
    """The platform adapters (and the ops server), each a task."""
    tasks: list[asyncio.Task[None]] = []
    # One HTTP server per process: in HTTP mode Slack's server has the ops routes.
    slack_http = slack_configured(settings) and not settings.slack_app_token
    if not slack_http:
        from bots.ops import serve_ops

        tasks.append(asyncio.create_task(serve_ops(bot, settings.http_host, settings.http_port)))
    if slack_configured(settings):
        from bots.slack import SlackAdapter

        tasks.append(asyncio.create_task(SlackAdapter(bot, settings).run()))
    if settings.discord_token:
        from bots.discord import DiscordAdapter

        tasks.append(asyncio.create_task(DiscordAdapter(bot, settings).run()))
    return tasks


async def _run(settings: Settings) -> None:
    if not slack_configured(settings) and not settings.discord_token:
        _stop_on_sigterm()
        await _chat(settings, user="me", thread="main", banner_extra=HOW_TO_CONFIGURE, jobs=True)
        return
    # SIGTERM (docker stop, Kubernetes) drains: nothing new is taken on (Slack gets 503s),
    # turns in flight get MEMBOT_SHUTDOWN_GRACE_SECONDS to be answered, learning not yet
    # run goes to the journal, and the process exits 0. A turn that could not finish
    # stays in the inbox and is answered after the restart.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with MemoryBot.open(settings) as bot, scheduled_jobs(bot):
        print(describe(bot), file=sys.stderr)
        platforms = await _serve(bot, settings)
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([*platforms, stopping], return_when=asyncio.FIRST_COMPLETED)
            if stop.is_set():
                left = await bot.drain()
                print(f"membot: stopped ({left} turn(s) left for the restart)", file=sys.stderr)
        finally:
            stopping.cancel()
            for task in platforms:
                task.cancel()
            results = await asyncio.gather(*platforms, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        failures = [r for r in failures if not isinstance(r, asyncio.CancelledError)]
        if failures:
            raise failures[0]


DESCRIPTION = "A Slack, Discord and console chat bot that remembers what each user tells it."

EPILOG = """where data lives: MEMBOT_DATA_DIR (default: data, in the working directory)
  qdrant/             the memory store, embedded Qdrant (unless MEMBOT_QDRANT_URL is set),
                      with membot_embedder.json: the embedder that built it
  checkpoints.sqlite  the conversations (unless MEMBOT_CHECKPOINT_URL is set)
  outbox.sqlite       learning not yet applied, retried after a crash
  inbox.sqlite        messages taken on and not yet answered (answered after a crash)
  locks/, audit.log   per-thread turn locks; the admin erasure audit trail

Settings come from MEMBOT_* environment variables (and the vendors' own names such as
SLACK_BOT_TOKEN, DISCORD_TOKEN, OPENAI_API_KEY), or a .env file in the working directory.
A configuration error is one line on stderr and exit status 2."""


def _version() -> str:
    """The installed distribution's version (what `pip show membot` says)."""
    try:
        return version("membot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="membot",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"membot {_version()}")
    commands = parser.add_subparsers(
        title="commands", dest="command", required=True, metavar="COMMAND"
    )
    commands.add_parser(
        "run",
        help="connect the platforms whose credentials are set (Slack: SLACK_BOT_TOKEN plus "
        "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET; Discord: DISCORD_TOKEN); with none set, "
        "chat in the console",
    )
    chat = commands.add_parser("chat", help="chat in the terminal as --user in --thread")
    chat.add_argument("--user", default="me", help="who you are (memories are per user)")
    chat.add_argument("--thread", default="main", help="conversation name")
    migrate = commands.add_parser(
        "migrate",
        help="copy this embedded install's memories to a Qdrant server (and its "
        "conversations to Postgres); the local data is only read. Stop the bot first.",
    )
    migrate.add_argument("--to-qdrant", required=True, metavar="URL", help="Qdrant server URL")
    migrate.add_argument(
        "--qdrant-api-key", metavar="KEY", help="default: MEMBOT_QDRANT_API_KEY, if set"
    )
    migrate.add_argument("--to-postgres", metavar="DSN", help="postgresql://... for checkpoints")
    commands.add_parser(
        "reindex",
        help="re-embed the embedded memory store with MEMBOT_EMBEDDING_PROVIDER (local or "
        "openai) and swap it in; the old store is kept as qdrant.<embedder>-<time>.bak. "
        "Stop the bot first.",
    )
    export = commands.add_parser(
        "export",
        help="write everything held about a person (memories, messages kept, history, "
        "conversation ids) as JSON; user ids are as the bot stores them, e.g. "
        "slack:T0123:U0456, discord:789, console:me",
    )
    export.add_argument("--user", required=True, help="whose data")
    export.add_argument("--out", default="-", metavar="PATH", help="default: standard output")
    load = commands.add_parser(
        "import", help="load a `membot export` file into this install's memory store"
    )
    load.add_argument("path", help="the export file")
    load.add_argument("--user", help="import as this user (default: the one exported)")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("MEMBOT_LOG_LEVEL", "WARNING"),
        help="DEBUG, INFO, WARNING (default, or MEMBOT_LOG_LEVEL), ERROR",
    )
    return parser


def _configure_logging(level: str, log_format: Literal["text", "json"]) -> None:
    """`configure_logging`, with an unknown level reported as the setting to fix."""
    try:
        configure_logging(level, log_format)
    except ValueError as err:
        raise ConfigError(
            "MEMBOT_LOG_LEVEL",
            f"log level {level!r} (--log-level or MEMBOT_LOG_LEVEL) is not one of DEBUG, "
            "INFO, WARNING, ERROR, CRITICAL.",
        ) from err


def _preflight(command: str) -> Settings:
    """The settings, and every check that needs nothing but them, before anything opens."""
    settings = load_settings()
    if command in ("run", "chat", "export", "import"):
        check_data_dir(settings)
        check_model_keys(settings)
    if command == "run":
        check_platforms(settings)
    return settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _preflight(args.command)
        _configure_logging(args.log_level, settings.log_format)
        if args.command == "run":
            asyncio.run(_run(settings))
        elif args.command == "migrate":
            from engine.migrate import run_command

            return asyncio.run(
                run_command(
                    settings,
                    qdrant_url=args.to_qdrant,
                    qdrant_api_key=args.qdrant_api_key,
                    postgres_dsn=args.to_postgres,
                )
            )
        elif args.command == "export":
            return _export(settings, args.user, args.out)
        elif args.command == "import":
            return _import(settings, args.path, args.user)
        elif args.command == "reindex":
            from engine.reindex import run_command as run_reindex

            return asyncio.run(run_reindex(settings))
        else:
            asyncio.run(_chat(settings, args.user, args.thread))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nBye.")
    except Exception as err:
        # Wherever it was raised: the settings, the store, an adapter in a task group.
        if (config_error := find_config_error(err)) is None:
            raise
        return report(config_error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
