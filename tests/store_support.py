"""Shared helpers for the store tests: a deterministic test embedder and comparators.

The embedder is a test double (a hash of the text spread over a few dimensions), not a
model: it makes every run reproducible and lets two stores see identical vectors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

from langgraph.store.base import Item, SearchItem

DIMS = 16


def hash_vector(text: str, dims: int = DIMS) -> list[float]:
    digest = hashlib.sha512(text.encode("utf-8", "surrogatepass")).digest()
    raw = [(b - 127.5) for b in digest[:dims]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def hash_embed(texts: Sequence[str]) -> list[list[float]]:
    return [hash_vector(t) for t in texts]


def index_config(fields: list[str] | None = None) -> dict[str, Any]:
    return {"dims": DIMS, "embed": hash_embed, "fields": fields or ["text"]}


def plain(item: Item | None) -> tuple[Any, ...] | None:
    """What two stores must agree on; timestamps differ between them by nature."""
    if item is None:
        return None
    return (tuple(item.namespace), item.key, item.value)


def assert_same_ranked(
    expected: Sequence[SearchItem], actual: Sequence[SearchItem], tol: float = 1e-5
) -> None:
    """Equal scores position by position; equal items, where ties allow.

    Both stores order equal scores arbitrarily, so items are compared as sets inside a
    group of ties, and not at all in a tie group cut by the page's end.
    """
    assert len(actual) == len(expected), (
        [plain(i) for i in expected],
        [plain(i) for i in actual],
    )
    for e, a in zip(expected, actual, strict=True):
        assert a.score is not None and e.score is not None
        assert math.isclose(a.score, e.score, abs_tol=tol), (e.score, a.score)
    groups: list[list[int]] = []
    for pos, item in enumerate(expected):
        if groups and math.isclose(
            expected[groups[-1][0]].score or 0, item.score or 0, abs_tol=tol
        ):
            groups[-1].append(pos)
        else:
            groups.append([pos])
    for group in groups[:-1]:
        assert sorted(map(repr, (plain(expected[p]) for p in group))) == sorted(
            map(repr, (plain(actual[p]) for p in group))
        )


def assert_same_set(expected: Sequence[Item], actual: Sequence[Item]) -> None:
    assert sorted(map(repr, map(plain, expected))) == sorted(map(repr, map(plain, actual)))
