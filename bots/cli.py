"""The `membot` command: `membot run` (the README's run command) and `membot chat`."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bots.logs import configure_logging
from engine.bot import CHECKPOINT_FILE, MemoryBot
from engine.checkpoint import describe_dsn, is_postgres_url, sqlite_path
from engine.scheduler import MemoryScheduler
from engine.settings import Settings

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
    embedder = settings.resolved_embedding_provider()
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


def _stop_on_sigterm() -> None:
    """SIGTERM (docker stop, Kubernetes) cancels the main task, so the store is flushed
    and the checkpointer closed on the way out instead of dying mid-write."""
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def _run(settings: Settings) -> None:
    _stop_on_sigterm()
    if not slack_configured(settings) and not settings.discord_token:
        await _chat(settings, user="me", thread="main", banner_extra=HOW_TO_CONFIGURE, jobs=True)
        return
    async with MemoryBot.open(settings) as bot, scheduled_jobs(bot):
        print(describe(bot), file=sys.stderr)
        async with asyncio.TaskGroup() as platforms:
            # One HTTP server per process: in HTTP mode Slack's server has the ops routes.
            slack_http = slack_configured(settings) and not settings.slack_app_token
            if not slack_http:
                from bots.ops import serve_ops

                platforms.create_task(serve_ops(bot, settings.http_host, settings.http_port))
            if slack_configured(settings):
                from bots.slack import SlackAdapter

                platforms.create_task(SlackAdapter(bot, settings).run())
            if settings.discord_token:
                from bots.discord import DiscordAdapter

                platforms.create_task(DiscordAdapter(bot, settings).run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="membot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="start the configured platform adapters, or the console")
    chat = commands.add_parser("chat", help="chat in the terminal")
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
    parser.add_argument("--log-level", default=os.environ.get("MEMBOT_LOG_LEVEL", "WARNING"))
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(args.log_level, settings.log_format)
    try:
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
        else:
            asyncio.run(_chat(settings, args.user, args.thread))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\nBye.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
