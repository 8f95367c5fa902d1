"""The audit trail of acts on someone's identity or memories: admin erasures, account links
and unlinks (who, whom, when, how many).

One JSON object per line, appended to a file (durable, greppable) and logged on the
`membot.audit` logger (for log shipping).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from pathlib import Path

logger = logging.getLogger("membot.audit")


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    async def record(
        self, action: str, *, actor: str, target: str, count: int, **extra: str
    ) -> None:
        entry = {
            "at": datetime.now(UTC).isoformat(),
            "action": action,
            "actor": actor,
            "target": target,
            "count": count,
            **extra,
        }
        line = json.dumps(entry, ensure_ascii=False)
        logger.warning("audit %s", line)
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as log:
            log.write(line + "\n")

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines() if line]
