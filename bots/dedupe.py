"""Remembering which platform events were already taken, so a retry is answered once.

Slack re-delivers an event it believes was not acknowledged (and a network can
duplicate one); the first delivery claims the id before any work starts, so a
duplicate arriving mid-processing is dropped too. Entries expire after `ttl_seconds`
(Slack retries within minutes) and the table is bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict


class EventDeduper:
    def __init__(self, ttl_seconds: float = 3600.0, max_entries: int = 100_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()

    def claim(self, event_id: str) -> bool:
        """True the first time `event_id` is seen (within the TTL), False after."""
        now = time.monotonic()
        while self._seen and (
            len(self._seen) >= self._max or next(iter(self._seen.values())) < now - self._ttl
        ):
            self._seen.popitem(last=False)
        if event_id in self._seen:
            return False
        self._seen[event_id] = now
        return True
