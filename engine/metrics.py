"""Prometheus metrics of the engine, on a registry of their own (`REGISTRY`).

The registry is module-level rather than prometheus_client's global default, so tests and
the `/metrics` endpoint (bots/ops.py) read exactly these series and nothing a library
registered by importing itself.

Labels carry only small, fixed vocabularies (outcome, provider, purpose, error type,
action, store operation): never user or thread ids, nor any text, which would both leak
what people said and give every user a series of their own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import Literal, ParamSpec, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

Outcome = Literal["ok", "error", "refused"]
Purpose = Literal["chat", "tool"]

# Seconds; a turn is one model call plus recall (and the local embedder), a model call is
# mostly network. Wide at the top: a slow provider with retries takes minutes.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

MESSAGES = Counter(
    "membot_messages_total",
    "Messages handled by MemoryBot (chat or stream), by outcome: ok (answered), error (model or "
    "engine failure; the user got an apology), refused (empty or over-long message).",
    ["outcome"],
    registry=REGISTRY,
)
REPLY_SECONDS = Histogram(
    "membot_reply_seconds",
    "MemoryBot turns end to end (to the last piece of a streamed answer) for answered "
    "turns (ok and error), including the wait for the thread's turn lock, recall and the "
    "model.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
FIRST_TEXT_SECONDS = Histogram(
    "membot_first_text_seconds",
    "From a message to the first piece of its streamed answer (what a person waits for "
    "before text appears), including the turn lock and recall.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
LLM_SECONDS = Histogram(
    "membot_llm_seconds",
    "Chat model calls (including the SDK's retries), by provider and purpose: chat "
    "(answers, summaries) or tool (memory extraction, consolidation).",
    ["provider", "purpose"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
LLM_ERRORS = Counter(
    "membot_llm_errors_total",
    "Failed chat model calls (after the SDK's retries), by provider and error type.",
    ["provider", "error_type"],
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "membot_feedback_total",
    "Ratings people gave answers (the feedback buttons under a reply), by rating.",
    ["rating"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "membot_duplicate_messages_total",
    "Platform messages delivered again (a retry, a duplicate, another replica) and not "
    "answered a second time.",
    registry=REGISTRY,
)
TAKEN_OVER = Counter(
    "membot_taken_over_messages_total",
    "Messages a dead process had accepted and not answered, answered after a takeover.",
    registry=REGISTRY,
)
MEMORY_WRITES = Counter(
    "membot_memory_writes_total",
    "Memories changed, by action (added, updated, deleted, merged); a merge counts every "
    "memory it touched.",
    ["action"],
    registry=REGISTRY,
)
STORE_SECONDS = Histogram(
    "membot_store_seconds",
    "Long-term memory store calls, by operation (recall: the search before each answer; "
    "write: one memory change with its history entry).",
    ["op"],
    buckets=_STORE_BUCKETS,
    registry=REGISTRY,
)

_LABEL_VALUE = re.compile(r"[a-z][a-z0-9_]{0,39}")


def label_value(value: object, default: str = "unknown") -> str:
    """`value` if it is a short identifier (lower case, digits, `_`), else `default`: keeps
    a label built from external data (a vendor's error type) small and free of text."""
    text = str(value) if value is not None else ""
    return text if _LABEL_VALUE.fullmatch(text) else default


class _Reply(Protocol):
    error: bool
    refused: bool


P = ParamSpec("P")
R = TypeVar("R")


def count_reply(reply: _Reply, started: float) -> None:
    """One finished turn of `MemoryBot` (`started`: its `time.perf_counter()`), counted by
    outcome (refused, error or ok) and timed when answered. A turn cancelled or closed
    before its end (shutdown, an abandoned stream) is not counted."""
    if reply.refused:
        MESSAGES.labels("refused").inc()
    else:
        _record_turn("error" if reply.error else "ok", started)


def first_text(started: float) -> None:
    """The first piece of a streamed answer reached the caller."""
    FIRST_TEXT_SECONDS.observe(time.perf_counter() - started)


def _record_turn(outcome: Outcome, started: float) -> None:
    MESSAGES.labels(outcome).inc()
    REPLY_SECONDS.observe(time.perf_counter() - started)


@contextmanager
def llm_call(provider: str | None, purpose: Purpose) -> Iterator[None]:
    """Times one model call (a whole stream, for a streamed answer) and counts its failure
    by the exception's `error_type` (a `ModelError`'s), or its class name. Cancellation
    (a closed stream, a shutdown) is neither."""
    label = label_value(provider)
    started = time.perf_counter()
    try:
        yield
    except Exception as err:
        LLM_SECONDS.labels(label, purpose).observe(time.perf_counter() - started)
        LLM_ERRORS.labels(label, _error_type(err)).inc()
        raise
    LLM_SECONDS.labels(label, purpose).observe(time.perf_counter() - started)


def measure_llm(
    purpose: Purpose,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorator for a provider's model-calling coroutine (its instance has `provider`):
    `llm_call` around each call."""

    def decorate(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(method)
        async def measured(*args: P.args, **kwargs: P.kwargs) -> R:
            with llm_call(getattr(args[0], "provider", None), purpose):
                return await method(*args, **kwargs)

        return measured

    return decorate


def _error_type(err: Exception) -> str:
    if hasattr(err, "error_type"):  # a ModelError: the vendor's type, "timeout", ...
        return label_value(getattr(err, "error_type", None))
    return label_value(type(err).__name__.lower(), default="other")
