"""The store namespace of a user's memories: `("memories", user_id)`.

LangGraph forbids "." and NUL in namespace labels, a lone surrogate cannot be stored
(not UTF-8), and `ns_prefixes` matching is exact per label. So a user id is used as-is
when it can be, and those characters and "%" itself are percent-escaped otherwise (ids
from adapters, like `slack:T1:U2`, never need it). The mapping is injective: two
different user ids never share a namespace.
"""

from __future__ import annotations

MEMORIES = "memories"


def memory_namespace(user_id: str) -> tuple[str, str]:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    return (MEMORIES, "".join(_escape(ch) for ch in user_id))


def _escape(ch: str) -> str:
    if ch in "%.\x00":
        return f"%{ord(ch):02X}"
    if "\ud800" <= ch <= "\udfff":
        return f"%u{ord(ch):04X}"
    return ch


def storable_id(thread_id: str) -> str:
    """A thread id the checkpointers can store: lone surrogates (only from broken input
    decoding, never from Slack or Discord) become `%uXXXX`; anything else is unchanged."""
    if not any("\ud800" <= ch <= "\udfff" for ch in thread_id):
        return thread_id
    return "".join(f"%u{ord(ch):04X}" if "\ud800" <= ch <= "\udfff" else ch for ch in thread_id)
