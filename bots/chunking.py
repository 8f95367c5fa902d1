"""Splitting long replies for platforms with a message size limit.

Cuts prefer paragraph, then line, then sentence, then word boundaries. A fenced code
block that has to be cut is closed at the end of one part and reopened (with its
language tag) at the start of the next, so every part renders on its own.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^\s*```(\S*)", re.M)
_BREAKS = ("\n\n", "\n", ". ", "! ", "? ", " ")


def split_message(text: str, limit: int) -> list[str]:
    if limit < 20:
        raise ValueError("limit too small to split sensibly")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit - 4)  # room to close an open code fence
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n ")
        language = _open_fence(head)
        if language is not None:
            head += "\n```"
            rest = f"```{language}\n{rest}"
        parts.append(head)
    if rest:
        parts.append(rest)
    return parts or [""]


def _cut_point(text: str, limit: int) -> int:
    window = text[:limit]
    for separator in _BREAKS:
        at = window.rfind(separator)
        if at > limit // 3:
            return at + len(separator.rstrip(" ") or separator)
    return limit


def _open_fence(text: str) -> str | None:
    """The language of a code fence left open at the end of `text`, else None."""
    fences = _FENCE.findall(text)
    return fences[-1] if len(fences) % 2 else None
