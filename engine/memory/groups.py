"""Grouping things that were found to be the same, pair by pair (union-find).

Consolidation joins memories whose vectors are close; linking joins facts of two
accounts that share a key, a slot or a text. Either way "a ~ b and b ~ c" puts a, b
and c in one group.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Groups(Generic[K]):
    def __init__(self, keys: Iterable[K]) -> None:
        self._parent: dict[K, K] = {key: key for key in keys}

    def _root(self, key: K) -> K:
        parent = self._parent
        while parent[key] != key:
            parent[key] = parent[parent[key]]  # path halving: later finds are short
            key = parent[key]
        return key

    def join(self, a: K, b: K) -> None:
        self._parent[self._root(a)] = self._root(b)

    def groups(self) -> list[list[K]]:
        """Every group, each in the order its keys were given (groups by their first)."""
        found: dict[K, list[K]] = {}
        for key in self._parent:
            found.setdefault(self._root(key), []).append(key)
        return list(found.values())
