"""Letting heavy work wait for a pause in incoming events.

Platforms redeliver an event that is not acknowledged in time (Slack: 3 s), and the
acknowledgement runs on the same event loop as the turns it triggers. In a burst, the
CPU of turns that already started (embedding, LangGraph, SQLite) delays acknowledging
the rest of the burst. So a turn first waits until no event has arrived for `quiet`
seconds, at most `max_wait`: a lone message waits `quiet` (20 ms, invisible next to a
model's seconds), and a burst is acknowledged before the work it causes begins.
"""

from __future__ import annotations

import asyncio
import time


class QuietPeriod:
    def __init__(self, quiet: float = 0.02, max_wait: float = 0.25) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self._last_arrival = 0.0

    def arrived(self) -> None:
        """Note an incoming event (call it on the path that acknowledges it)."""
        self._last_arrival = time.monotonic()

    async def wait(self) -> None:
        deadline = time.monotonic() + self.max_wait
        while (now := time.monotonic()) < deadline:
            calm_in = self._last_arrival + self.quiet - now
            if calm_in <= 0:
                return
            await asyncio.sleep(min(calm_in, deadline - now))
