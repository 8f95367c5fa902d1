"""What reaches the logs: slack-bolt's own record of a request with a bad signature keeps
its signal but not the request body (a person's message text)."""

from __future__ import annotations

import io
import logging

from slack_bolt.middleware.request_verification.async_request_verification import (
    AsyncRequestVerification,
)

from bots.logs import configure_logging


def test_a_rejected_slack_request_is_logged_without_its_body() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream=stream)
    try:
        verification = AsyncRequestVerification(signing_secret="secret")
        body = '{"event": {"text": "my bank PIN is 4921"}}'
        # bolt's own code path for a bad signature (what a forged request triggers)
        verification._debug_log_error("v0=bad", "1700000000", body)
    finally:
        logging.basicConfig(handlers=[logging.NullHandler()], force=True)
    logged = stream.getvalue()
    assert "Invalid request signature detected" in logged
    assert "4921" not in logged and "withheld" in logged
