"""Joining the memories of linked accounts into one person's, and parting them again.

When two accounts become one person, their facts, episodes and histories move into the
person's namespace. The same fact held on both sides (one slot such as "where I live",
one key, or one text) is kept once: the newest statement wins, as in any update, and the
older one is recorded in the history ("merged", with its valid time ended) while the
messages it came from stop being recalled, so a stale value said on one platform never
answers for a newer one said on the other.

Unlinking parts them by where each memory was said: what came from the leaving account's
tenancy (its source thread) goes back to that account; the rest stays with the person.
A memory with no source thread (imported, `/remember` with none) stays with the person.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.store.base import BaseStore, Item, PutOp

from engine import metrics
from engine.memory.groups import Groups
from engine.memory.manager import comparable
from engine.memory.namespace import memory_namespace
from engine.memory.records import (
    all_items,
    history_namespace,
    history_put,
    is_episode,
    put_op,
    superseded,
    write_all,
)
from engine.store.erase import adelete_namespace


@dataclass(frozen=True)
class Moved:
    facts: int = 0
    episodes: int = 0
    merged: int = 0  # duplicate facts folded into a newer one


def _newness(item: Item) -> tuple[str, str]:
    return (str(item.value.get("valid_from", "")), str(item.value.get("updated_at", "")))


def _groups(facts: Sequence[Item]) -> list[list[Item]]:
    """Facts that are one fact: same key, same slot or same text (transitively)."""
    groups = Groups(range(len(facts)))
    first: dict[tuple[str, str], int] = {}
    for i, item in enumerate(facts):
        marks = [("key", item.key), ("text", comparable(str(item.value.get("text", ""))))]
        if slot := item.value.get("slot"):
            marks.append(("slot", str(slot)))
        for mark in marks:
            if mark in first:
                groups.join(i, first[mark])
            else:
                first[mark] = i
    return [[facts[i] for i in group] for group in groups.groups()]


async def _everything(store: BaseStore, owner: str) -> tuple[list[Item], list[Item]]:
    memories = [item async for item in all_items(store, memory_namespace(owner))]
    history = [item async for item in all_items(store, history_namespace(owner))]
    return memories, history


async def merge_into(store: BaseStore, owners: Sequence[str], target: str) -> Moved:
    """Move the memories of `owners` (identities or people) into `target`'s, keeping one
    of each fact held twice; the owners' namespaces are emptied. Writes before deletes,
    and every key is kept, so a merge cut short and run again gives the same result."""
    namespace, history_ns = memory_namespace(target), history_namespace(target)
    mine, _ = await _everything(store, target)
    facts = [item for item in mine if not is_episode(item.value)]
    episodes = {item.key: item for item in mine if is_episode(item.value)}
    incoming: list[Item] = []
    ops: list[PutOp] = []
    for owner in owners:
        memories, history = await _everything(store, owner)
        incoming += memories
        ops += [put_op(store, history_ns, h.key, h.value, index=False) for h in history]
    moved_episodes = [item for item in incoming if is_episode(item.value)]
    facts += [item for item in incoming if not is_episode(item.value)]
    episodes.update({item.key: item for item in moved_episodes})
    kept: dict[str, dict[str, Any]] = {}
    touched: set[str] = set()  # episodes of a replaced value, no longer recalled
    own = {id(item) for item in mine}
    merged = 0
    for group in _groups(facts):
        winner = max(group, key=_newness)
        kept[winner.key] = winner.value
        for loser in group:
            if loser is winner:
                continue
            merged += 1
            ops.append(_folded(store, namespace, loser, winner, episodes, touched))
            if loser.key != winner.key and id(loser) in own:
                ops.append(put_op(store, namespace, loser.key, None))
    arrivals = {item.key for item in incoming}
    ops += [put_op(store, namespace, key, value) for key, value in kept.items() if key in arrivals]
    ops += [
        put_op(store, namespace, key, item.value)
        for key, item in episodes.items()
        if key in arrivals or key in touched
    ]
    await write_all(store, ops)
    for owner in owners:
        await adelete_namespace(store, memory_namespace(owner))
        await adelete_namespace(store, history_namespace(owner))
    if merged:
        metrics.MEMORY_WRITES.labels("merged").inc(merged)
    return Moved(len(kept), len(moved_episodes), merged)


def _folded(
    store: BaseStore,
    namespace: tuple[str, ...],
    loser: Item,
    winner: Item,
    episodes: dict[str, Item],
    touched: set[str],
) -> PutOp:
    """The history of `loser` folded into `winner`; when they differ, the loser is a
    replaced value: its valid time ends and its messages are no longer recalled."""
    same = comparable(str(loser.value.get("text", ""))) == comparable(
        str(winner.value.get("text", ""))
    )
    ended = str(winner.value.get("valid_from", "")) or None
    if not same:
        for key in loser.value.get("sources") or []:
            episode = episodes.get(key) if isinstance(key, str) else None
            if episode is not None and "superseded_by" not in episode.value:
                value = superseded(episode.value, by=winner.key, at=ended or "")
                episodes[key] = Item(
                    value=value,
                    key=episode.key,
                    namespace=episode.namespace,
                    created_at=episode.created_at,
                    updated_at=episode.updated_at,
                )
                touched.add(key)
    return history_put(
        store,
        namespace,
        memory_key=loser.key,
        action="merged",
        old=str(loser.value.get("text", "")),
        new=None if same else str(winner.value.get("text", "")),
        by="link",
        thread=str(loser.value.get("source_thread", "")),
        reason="linked accounts: the same fact"
        if same
        else "linked accounts: the newer statement replaces it",
        valid_from=None if same else loser.value.get("valid_from"),
        valid_until=None if same else ended,
    )


async def split_off(
    store: BaseStore, person: str, target: str, *, belongs: Callable[[str], bool]
) -> Moved:
    """Move the memories of `person` whose source thread `belongs` to `target` (the
    account leaving), with their history; the rest stays with `person`."""
    memories, history = await _everything(store, person)
    leaving = [item for item in memories if belongs(str(item.value.get("source_thread") or ""))]
    keys = {item.key for item in leaving}
    namespace, history_ns = memory_namespace(target), history_namespace(target)
    moving_history = [h for h in history if h.value.get("memory_key") in keys]
    ops = [put_op(store, namespace, item.key, item.value) for item in leaving]
    ops += [put_op(store, history_ns, h.key, h.value, index=False) for h in moving_history]
    await write_all(store, ops)
    removals = [put_op(store, memory_namespace(person), key, None) for key in keys]
    removals += [put_op(store, history_namespace(person), h.key, None) for h in moving_history]
    await write_all(store, removals)
    episodes = sum(1 for item in leaving if is_episode(item.value))
    return Moved(len(leaving) - episodes, episodes, 0)
