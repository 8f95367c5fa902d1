"""Recall: the user's facts and episodes that bear on what they just said, with dates.

One hybrid query in the user's own namespace (dense + BM25 + recency, run by Qdrant;
`engine.store.hybrid`), filtered to what may be recalled: no questions, nothing a newer
statement replaced. Facts and episodes come back together, each with the time it was
said or became true, so an answer can say "on 12 Nov you said …" and a prompt can show
which of two statements is newer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import BaseStore, GetOp, Item

from engine.memory.extract import profile_key
from engine.memory.namespace import memory_namespace
from engine.memory.questions import asked_slots
from engine.memory.records import RECALLABLE, is_episode, parse_time
from engine.store.hybrid import HybridConfig, hybrid_config


@dataclass(frozen=True)
class Recalled:
    key: str
    text: str
    kind: str
    when: datetime | None  # when it was said / became true
    score: float | None  # the store's hybrid score; None when the store has no index
    # The part of the score that is about meaning (dense + BM25): the score without the
    # recency and kind bonuses, which order close candidates but say nothing about
    # whether one answers the question at all.
    relevance: float | None = None
    # The message says something changed ("I started at Birchwood on monday", "we moved").
    changed: bool = False

    @property
    def episode(self) -> bool:
        return self.kind in ("episode", "question")


def _when(item: Item) -> datetime | None:
    raw = item.value.get("valid_from") or item.value.get("created_at")
    return parse_time(raw) if isinstance(raw, str) else item.created_at


def _relevance(
    score: float, config: HybridConfig | None, value: dict[str, Any], now: datetime
) -> float:
    """The store's formula (engine/store/hybrid.py) undone down to its meaning part:
    the boosts subtracted, the recency factor divided out."""
    if config is None:
        return score
    boosts = config.get("boosts") or []
    score -= sum(float(b["weight"]) for b in boosts if value.get(b["field"]) == b["value"])
    # Undated items count as fresh (engine/store/hybrid.py).
    when = parse_time(value.get(config.get("time_field") or "")) or now
    age_days = abs((now - when).total_seconds()) / 86_400
    decay = 0.5 ** (age_days / float(config["half_life_days"]))
    return score / (1 + float(config["recency_weight"]) * decay)


def recalled(
    item: Item, config: HybridConfig | None = None, now: datetime | None = None
) -> Recalled | None:
    text = item.value.get("text")
    if not isinstance(text, str) or not text.strip():
        return None
    kind = "episode" if is_episode(item.value) else str(item.value.get("kind", "fact"))
    score = getattr(item, "score", None)
    relevance = None
    if score is not None:
        relevance = _relevance(score, config, item.value, now or datetime.now(UTC))
    changed = item.value.get("change") == "yes"
    return Recalled(item.key, text, kind, _when(item), score, relevance, changed)


async def recall(store: BaseStore, user_id: str, query: str, *, limit: int) -> list[Recalled]:
    """The best `limit` recallable memories of `user_id` for `query`, best first."""
    if limit <= 0:
        return []
    now = datetime.now(UTC)
    namespace = memory_namespace(user_id)
    items = await store.asearch(namespace, query=query, filter=RECALLABLE, limit=limit)
    config = hybrid_config(getattr(store, "index_config", None))
    found = [r for item in items if (r := recalled(item, config, now)) is not None]
    slotted = await _slot_facts(store, namespace, query)
    keys = {r.key for r in slotted}
    # Imported here: the relevance rules import `Recalled` from this module.
    from engine.memory.relevance import newest_first

    return newest_first(query, [*slotted, *(r for r in found if r.key not in keys)])[:limit]


async def _slot_facts(store: BaseStore, namespace: tuple[str, ...], query: str) -> list[Recalled]:
    """The facts a question asks for by subject ("what's my job?" -> the job slot), read by
    key (engine/memory/questions.py): first, whatever a similarity search ranks."""
    slots = asked_slots(query)
    if not slots:
        return []
    items = await store.abatch([GetOp(namespace, profile_key(slot)) for slot in slots])
    found = [r for item in items if item is not None and (r := recalled(item)) is not None]
    return sorted(found, key=lambda r: r.when or datetime.min.replace(tzinfo=UTC), reverse=True)
