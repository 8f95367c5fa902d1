"""Waiting in tests without racing the clock.

Tests run beside other test runs on a busy machine, so a wait is for a condition, with a
timeout far above anything a healthy run needs (`WAIT`): a slow machine makes a test
slower, never red. A test never sleeps and then asserts that nothing happened; it sends a
sentinel (a later event that must be answered), waits for that answer, and then counts
(`FakeSlack.wait_for(..., where=...)`, `FakeDiscord.wait_for_reply`).
"""

# The waits take `timeout=` because tests read better that way than wrapped in asyncio.timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

WAIT = 60.0  # seconds: generous on a loaded 2-core machine, still bounded when broken


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = WAIT,
    what: str = "condition",
    interval: float = 0.005,
) -> T:
    """Poll `check()` (a plain or an async function) until it returns something truthy,
    and return that. Fails with TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result: Any = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(interval)
