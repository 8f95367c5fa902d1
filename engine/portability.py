"""Everything membot holds about a person as one JSON document, and back into a store.

A person may ask what is held about them and take it with them (GDPR articles 15 and
20): their facts, the messages kept as episodes, the history of every change ("why do you
believe that?") and the conversations they spoke in. The document names its schema, so
a later membot can read an older export. Vectors are not exported: they belong to an
embedder, and the importing store computes its own (`membot reindex` does the same when
the embedder changes). Importing the same document twice gives the same store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import BaseStore, Item

from engine.memory.namespace import memory_namespace
from engine.memory.records import all_items, history_namespace, is_episode, put_op, write_all

SCHEMA = "membot-export/1"


class ExportError(ValueError):
    """A document that is not a membot export this version can read; says why."""


def _entry(item: Item) -> dict[str, Any]:
    return {"key": item.key, "value": item.value}


async def export_person(store: BaseStore, user_id: str) -> dict[str, Any]:
    """The person's whole record (`SCHEMA`), oldest first within each part."""
    facts: list[dict[str, Any]] = []
    episodes: list[dict[str, Any]] = []
    async for item in all_items(store, memory_namespace(user_id)):
        (episodes if is_episode(item.value) else facts).append(_entry(item))
    history = [_entry(item) async for item in all_items(store, history_namespace(user_id))]
    threads = {
        str(entry["value"].get("source_thread"))
        for entry in [*facts, *episodes]
        if entry["value"].get("source_thread")
    }
    return {
        "schema": SCHEMA,
        "exported_at": datetime.now(UTC).isoformat(),
        "user_id": user_id,
        "memories": sorted(facts, key=lambda e: str(e["value"].get("created_at", ""))),
        "episodes": sorted(episodes, key=lambda e: str(e["value"].get("valid_from", ""))),
        "history": sorted(history, key=lambda e: str(e["value"].get("at", ""))),
        "conversations": sorted(threads),
    }


def _entries(document: dict[str, Any], part: str) -> list[tuple[str, dict[str, Any]]]:
    entries = document.get(part, [])
    if not isinstance(entries, list):
        raise ExportError(f"'{part}' is not a list")
    checked = []
    for n, entry in enumerate(entries):
        key = entry.get("key") if isinstance(entry, dict) else None
        value = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(key, str) or not key or not isinstance(value, dict):
            raise ExportError(f"'{part}' entry {n} has no key or no value object")
        if part != "history" and not isinstance(value.get("text"), str):
            raise ExportError(f"'{part}' entry {n} has no text")
        checked.append((key, value))
    return checked


async def import_person(
    store: BaseStore, document: dict[str, Any], *, user_id: str | None = None
) -> dict[str, int]:
    """Write an export into `store`, for `user_id` (default: the one it was exported
    for); returns how many memories, episodes and history entries were written. The
    whole document is checked before anything is written."""
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise ExportError(f"not a membot export (schema {found!r}; this version reads {SCHEMA})")
    person = user_id or document.get("user_id")
    if not isinstance(person, str) or not person:
        raise ExportError("the export names no user; pass one")
    parts = {part: _entries(document, part) for part in ("memories", "episodes", "history")}
    namespace, history = memory_namespace(person), history_namespace(person)
    writes = [put_op(store, namespace, k, v) for k, v in parts["memories"] + parts["episodes"]]
    writes += [put_op(store, history, k, v, index=False) for k, v in parts["history"]]
    await write_all(store, writes)
    return {part: len(entries) for part, entries in parts.items()}
