"""What a stored memory looks like, and the append-only record of how it changed.

Two kinds of memory share the user's namespace `("memories", user_id)`, so one search
(and one `/forget`) covers both; only "text" is embedded:

- a **fact** `{"text", "kind", "source_thread", "valid_from", "slot"?, "sources",
  "created_at", "updated_at"}`: something durable that was extracted, in the user's first
  person. `valid_from` is when it became true (when it was said), not when it was written.
- an **episode** `{"text", "kind": "episode" | "question", "source_thread", "message_id",
  "valid_from", ...}`: a user message kept verbatim at turn time, so whatever was said in
  passing can be recalled even when no extractor understood it. Questions are kept as
  episodes of kind "question" and never recalled (a question does not answer itself).

Facts are bi-temporal the simple way: the current version lives in the namespace, a
replaced one lives on in the history with its `valid_until`; the episodes a replaced fact
came from are marked `superseded_by` so recall never quotes the stale statement.

Every change (added,
updated, deleted, merged) is appended as its own unembedded item in the user's
`("memory_history", user_id)` namespace, so "why do you think I live in Lisbon?" has an
answer (old text -> new text, by what, from which thread, when) even after the memory
itself is gone. History lives beside, not under, the memories namespace: a search of
`("memories", user_id)` must only ever return memories.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, Literal

from langgraph.store.base import BaseStore, Item, PutOp

from engine.memory.namespace import memory_namespace

Kind = Literal["fact", "preference", "event", "instruction"]
KINDS: tuple[Kind, ...] = ("fact", "preference", "event", "instruction")
Action = Literal["added", "updated", "deleted", "merged"]
EPISODE = "episode"
QUESTION = "question"
EPISODIC = (EPISODE, QUESTION)

HISTORY = "memory_history"

# What recall may return: no questions, nothing superseded. (`$ne` also matches items
# without the field, i.e. everything stored before episodes existed.)
# String flags, not booleans: each store filter compares one field, and strings compare
# the same on every backend.
NEVER = "never"
RECALLABLE: dict[str, Any] = {"recall": {"$ne": NEVER}}
# Facts only: what `/memories` lists and extraction reconciles against.
FACTS_ONLY: dict[str, Any] = {"memory_type": {"$ne": EPISODE}}
EPISODES_ONLY: dict[str, Any] = {"memory_type": EPISODE}


def history_namespace(user_id: str) -> tuple[str, str]:
    return (HISTORY, memory_namespace(user_id)[1])


def now() -> str:
    return stamp(datetime.now(UTC))


def stamp(at: datetime) -> str:
    """The one way times are written into values (ISO 8601, UTC, milliseconds)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def parse_time(raw: object) -> datetime | None:
    """A time as written by `stamp` (or any ISO 8601, naive taken as UTC); None if it is
    not one. The one reader of the times in values."""
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    if not isinstance(raw, str) or not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def new_key() -> str:
    return f"mem-{uuid.uuid4().hex}"


def is_episode(value: dict[str, Any]) -> bool:
    return value.get("kind") in EPISODIC


def memory_value(
    text: str,
    kind: Kind,
    source_thread: str,
    *,
    previous: Item | None = None,
    valid_from: str | None = None,
    slot: str | None = None,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    """The value to store; an update keeps the memory's creation time."""
    written = now()
    created = previous.value.get("created_at", written) if previous else written
    value: dict[str, Any] = {
        "text": text,
        "kind": kind,
        "source_thread": source_thread,
        "valid_from": valid_from or written,
        "sources": list(sources or []),
        "created_at": created,
        "updated_at": written,
    }
    if slot:
        value["slot"] = slot
    return value


def episode_key(thread_id: str, message_id: str) -> str:
    """Stable per message: a redelivered or retried message rewrites its episode."""
    name = thread_id + "\x00" + message_id
    return f"ep-{uuid.uuid5(uuid.NAMESPACE_URL, name).hex}"


def episode_value(
    text: str,
    *,
    thread_id: str,
    message_id: str,
    at: datetime,
    question: bool,
    change: bool = False,
    says_little: bool = False,
) -> dict[str, Any]:
    """`change`: the message says something changed ("we moved", "I'm a nurse now"); recall
    ranks such a statement above the older one it replaces (engine/store/factory.py).
    `says_little`: a reply such as "perfect" or "grand": kept (the person said it, it is
    theirs to see and export) but never recalled, as a question is not."""
    written = now()
    return {
        "text": text,
        "kind": QUESTION if question else EPISODE,
        "memory_type": EPISODE,
        **({"recall": NEVER} if question or says_little else {}),
        **({"change": "yes"} if change and not question else {}),
        "source_thread": thread_id,
        "message_id": message_id,
        "valid_from": stamp(at),
        "created_at": written,
        "updated_at": written,
    }


def superseded(value: dict[str, Any], *, by: str, at: str) -> dict[str, Any]:
    """An episode whose statement a newer fact replaced: kept (the user said it), but
    never recalled again."""
    return {**value, "recall": NEVER, "superseded_by": by, "valid_until": at}


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
    valid_from: str | None = None,
    valid_until: str | None = None,
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
    if valid_from:
        value["valid_from"] = valid_from  # when the replaced text had become true
    if valid_until:
        value["valid_until"] = valid_until  # when it stopped being true
    key = f"{memory_key}:{uuid.uuid4().hex[:12]}"
    return put_op(store, (HISTORY, *namespace[1:]), key, value, index=False)


async def all_items(
    store: BaseStore, namespace: tuple[str, ...], *, page: int = 500
) -> AsyncIterator[Item]:
    """Every item of `namespace`, a page at a time (exports, merges: a person's whole
    record, however large)."""
    offset = 0
    while found := await store.asearch(namespace, limit=page, offset=offset):
        for item in found:
            yield item
        offset += len(found)


async def write_all(store: BaseStore, ops: list[PutOp], *, page: int = 500) -> None:
    """Many writes (a whole person's record) in requests of `page`, in order."""
    for start in range(0, len(ops), page):
        await store.abatch(ops[start : start + page])


async def memory_history(
    store: BaseStore, user_id: str, memory_key: str | None = None, *, limit: int = 200
) -> list[dict[str, Any]]:
    """A user's change log, oldest first; only one memory's when `memory_key` is given."""
    filter_ = {"memory_key": memory_key} if memory_key else None
    items = await store.asearch(history_namespace(user_id), filter=filter_, limit=limit)
    return sorted((item.value for item in items), key=lambda entry: entry["at"])
