"""Operations endpoints: `/healthz`, `/readyz` and `/metrics`, as aiohttp routes.

One HTTP server per process: with Slack in HTTP mode the routes are added to bolt's
aiohttp app (`SlackAdapter.web_app()`), so they answer on the same port as
`/slack/events`; otherwise `membot run` serves them alone with `serve_ops()` on
`MEMBOT_HTTP_HOST:MEMBOT_HTTP_PORT`.

- `/healthz`: 200 "ok" while the process runs (liveness: the event loop answers).
- `/readyz`: 200 when the memory store and the checkpointer both answer a cheap call
  within `READY_TIMEOUT` seconds, else 503; the JSON body names each part with "ok" or
  the error's class name (never its message, which may name a server or a DSN); 503
  with `"shutdown": "draining"` once SIGTERM started the drain.
- `/metrics`: the engine's Prometheus registry (`engine.metrics.REGISTRY`) as text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine.metrics import REGISTRY

if TYPE_CHECKING:
    from engine.bot import MemoryBot

logger = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # seconds per check; probes time out after a few seconds themselves
PROBE_KEY = "membot-readyz"  # a namespace and a thread id nothing else uses


async def _store_check(bot: MemoryBot) -> None:
    await bot.store.asearch((PROBE_KEY,), limit=1)


async def _checkpointer_check(bot: MemoryBot) -> None:
    await bot.checkpointer.aget_tuple({"configurable": {"thread_id": PROBE_KEY}})


CHECKS: dict[str, Callable[[MemoryBot], Awaitable[Any]]] = {
    "store": _store_check,
    "checkpointer": _checkpointer_check,
}


async def _check(name: str, bot: MemoryBot) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await CHECKS[name](bot)
    except Exception as err:  # whatever it is, the part is not ready
        cause = type(err).__name__
        logger.warning("readyz: %s is not ready (%s)", name, cause)
        logger.debug("readyz: %s check failed", name, exc_info=True)
        return f"error: {cause}"
    return "ok"


def add_ops_routes(app: web.Application, bot: MemoryBot) -> None:
    """Add `GET /healthz`, `/readyz` and `/metrics` to `app` (before it starts)."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        results = await asyncio.gather(*(_check(name, bot) for name in CHECKS))
        parts = dict(zip(CHECKS, results, strict=True))
        if bot.draining:  # shutting down: send new work elsewhere
            parts["shutdown"] = "draining"
        ready = all(result == "ok" for result in results) and not bot.draining
        return web.json_response(parts, status=200 if ready else 503)

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_ops(bot: MemoryBot, host: str, port: int) -> web.AppRunner:
    """A running server with only the ops routes; the caller cleans the runner up.
    Port 0 picks a free port (`runner.addresses`)."""
    app = web.Application()
    add_ops_routes(app, bot)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def serve_ops(bot: MemoryBot, host: str, port: int) -> None:
    """Serve the ops routes on `host:port` until cancelled (Socket Mode, Discord).

    A port that cannot be bound (in use, no permission) is logged as an error and this
    returns: the platforms keep answering, only the endpoints are missing (and a liveness
    probe will say so)."""
    try:
        runner = await start_ops(bot, host, port)
    except OSError as err:
        logger.error(
            "ops: cannot listen on %s:%d (%s); /healthz, /readyz and /metrics are off. "
            "Set MEMBOT_HTTP_PORT to a free port.",
            host,
            port,
            err.strerror or type(err).__name__,
        )
        return
    logger.info("ops: /healthz, /readyz and /metrics on port %d", port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
