"""Logging setup for `membot`: readable text lines, or one JSON object per line.

`MEMBOT_LOG_FORMAT=json` (the Kubernetes ConfigMap sets it) gives log collectors
`{"time", "level", "logger", "message"}` plus `"exception"` (the formatted traceback)
when a record carries one. Standard library only.

What is logged at all is decided where the records are made: tokens and message or memory
texts are never logged at INFO or above, whichever format prints them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, and
    exception / stack when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class WithholdRequestBodies(logging.Filter):
    """slack-bolt (1.x) logs a request that fails signature verification at INFO with its
    whole body: the message text of whoever sent it (RequestVerification._debug_log_error;
    no setting turns the body off). The record keeps its signal, the body is withheld."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("slack_bolt") and "body:" in record.getMessage():
            record.msg, record.args = (
                "%s (request body withheld)",
                (record.getMessage().split("(", 1)[0].strip(),),
            )
        return True


def configure_logging(
    level: str | int, log_format: Literal["text", "json"] = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every record at `level` or above to `stream` (stderr) in `log_format`,
    replacing the root logger's handlers. Returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(WithholdRequestBodies())
    if isinstance(level, str):
        level = level.upper()
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
