"""What a stored memory looks like, and the append-only record of how it changed.

A memory value is `{"text", "kind", "source_thread", "created_at", "updated_at"}` in the
user's namespace `("memories", user_id)`; only "text" is embedded. Every change (added,
updated, deleted, merged) is appended as its own unembedded item in the user's
`("memory_history", user_id)` namespace, so "why do you think I live in Lisbon?" has an
answer (old text -> new text, by what, from which thread, when) even after the memory
itself is gone. History lives beside, not under, the memories namespace: a search of
`("memories", user_id)` must only ever return memories.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.store.base import BaseStore, Item, PutOp

from engine.memory.namespace import memory_namespace

Kind = Literal["fact", "preference", "event", "instruction"]
KINDS: tuple[Kind, ...] = ("fact", "preference", "event", "instruction")
Action = Literal["added", "updated", "deleted", "merged"]

HISTORY = "memory_history"


def history_namespace(user_id: str) -> tuple[str, str]:
    return (HISTORY, memory_namespace(user_id)[1])


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_key() -> str:
    return f"mem-{uuid.uuid4().hex}"


def memory_value(
    text: str, kind: Kind, source_thread: str, *, previous: Item | None = None
) -> dict[str, Any]:
    """The value to store; an update keeps the memory's creation time."""
    stamp = now()
    created = previous.value.get("created_at", stamp) if previous else stamp
    return {
        "text": text,
        "kind": kind,
        "source_thread": source_thread,
        "created_at": created,
        "updated_at": stamp,
    }


def put_op(
    store: BaseStore,
    namespace: tuple[str, ...],
    key: str,
    value: dict[str, Any] | None,
    *,
    index: Literal[False] | list[str] | None = None,
) -> PutOp:
    """A write for `store.abatch`. Unlike `aput`, a bare `PutOp` does not get the store's
    default TTL, so it is filled in here: batched memory writes must expire like others."""
    ttl_config = getattr(store, "ttl_config", None) or {}
    return PutOp(namespace, key, value, index, ttl_config.get("default_ttl"))


def history_put(
    store: BaseStore,
    namespace: tuple[str, ...],
    *,
    memory_key: str,
    action: Action,
    old: str | None,
    new: str | None,
    by: str,
    thread: str,
    reason: str = "",
) -> PutOp:
    """One history entry as a store write (batched with the memory write it explains).

    `namespace` is the memory's own (`("memories", label)`); `by` names what made the
    change: "model:<name>", "rules", "user", "consolidation".
    """
    value = {
        "memory_key": memory_key,
        "action": action,
        "old": old,
        "new": new,
        "by": by,
        "thread": thread,
        "reason": reason,
        "at": now(),
    }
    key = f"{memory_key}:{uuid.uuid4().hex[:12]}"
    return put_op(store, (HISTORY, *namespace[1:]), key, value, index=False)


async def memory_history(
    store: BaseStore, user_id: str, memory_key: str | None = None, *, limit: int = 200
) -> list[dict[str, Any]]:
    """A user's change log, oldest first; only one memory's when `memory_key` is given."""
    filter_ = {"memory_key": memory_key} if memory_key else None
    items = await store.asearch(history_namespace(user_id), filter=filter_, limit=limit)
    return sorted((item.value for item in items), key=lambda entry: entry["at"])
