"""A fake HTTP server that serves from its own event loop in a background thread.

The vendor fakes (`FakeLLM`, `FakeQdrant`) run this way so that a synchronous client, or
anything else that blocks the test's loop, cannot deadlock them. A subclass builds its
aiohttp app in `_app()`; this class owns the port, the thread and the shutdown, and works
as a sync or async context manager.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Self

from aiohttp import web

from tests.fakes.waits import WAIT


class ThreadedServer:
    def __init__(self) -> None:
        self.port = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None  # set when the server shuts down

    def _app(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        name = type(self).__name__
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(sock, ready),), name=name, daemon=True
        )
        self._thread.start()
        if not ready.wait(WAIT) or self._stopping is None:
            raise RuntimeError(f"{name} server did not start")

    def close(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(WAIT)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=1.0)
        try:
            await runner.setup()
            await web.SockSite(runner, sock).start()
            stopping = asyncio.Event()
            self._loop, self._stopping = asyncio.get_running_loop(), stopping
            ready.set()
            await stopping.wait()
        finally:
            ready.set()
            await runner.cleanup()
