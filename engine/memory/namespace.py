"""The store namespace of a user's memories: `("memories", user_id)`.

LangGraph forbids "." in namespace labels and `ns_prefixes` matching is exact per
label, so a user id is used as-is when it can be, and percent-escaped when it
contains "." or "%" (ids from adapters, like `slack:T1:U2`, never need it). The
mapping is injective: two different user ids never share a namespace.
"""

from __future__ import annotations

MEMORIES = "memories"


def memory_namespace(user_id: str) -> tuple[str, str]:
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("user_id must be a non-empty string")
    return (MEMORIES, user_id.replace("%", "%25").replace(".", "%2E"))
