"""Which single-valued fact a question asks for: "what do I do for work?" -> the job slot.

The extractor files a person's single-valued facts (where they live, their job, their
name, their partner …) under fixed keys (`profile-<slot>`, engine/memory/extract.py).
A question about one of them is answered by that key, not by similarity: a small
sentence model ranks "ooh a listening night with friends is a cute idea" above "I'm a
physio." for "what do I do for work?", but the slot holds the answer whatever the
wording. Only questions about the user themself map to a slot ("where does my brother
live?" is not about the user's home), and a relation's slot only answers who they are.
"""

from __future__ import annotations

import re

from engine.memory.extract import relation_slot

# (slot, pattern) in order; the first match wins. Patterns are matched against the
# lowercased question with spaces squeezed.
_SLOT_QUESTIONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (slot, re.compile(pattern))
    for slot, pattern in (
        (
            "employer",
            r"\b(?:where|who|which\s+(?:company|firm|place))\s+(?:do|did)\s+i\s+work"
            r"(?:\s+(?:for|at))?\b|\bwho(?:'s|\s+is)\s+my\s+employer\b|"
            r"\bwhere\s+am\s+i\s+working\b|\bwhat\s+company\b.*\bi\s+work",
        ),
        (
            "job",
            r"\bwhat\s+(?:do|did)\s+i\s+do\s+(?:for\s+(?:work|a\s+living|money)|now)\b|"
            r"\bwhat(?:'s|\s+is)\s+my\s+(?:job|profession|occupation|trade|line\s+of\s+work)\b|"
            r"\bwhat\s+(?:do|did)\s+i\s+work\s+as\b|\bwhat\s+(?:job|kind\s+of\s+work)\s+do\s+i\b",
        ),
        (
            "home",
            r"\bwhere\s+(?:do|did)\s+(?:i|we)\s+live\b|\bwhere\s+(?:am\s+i|are\s+we)\s+"
            r"(?:living|based|staying)\b|\b(?:what|which)\s+(?:city|town|country|place)\s+"
            r"(?:do|am|are)\s+(?:i|we)\s+(?:live|living|based|in)\b|\bwhere(?:'s|\s+is)\s+"
            r"(?:my|our)\s+home\b",
        ),
        (
            "hometown",
            r"\bwhere\s+(?:am|was)\s+i\s+(?:from|born|raised)\b|"
            r"\bwhere\s+did\s+i\s+grow\s+up\b|\bwhat(?:'s|\s+is)\s+my\s+hometown\b",
        ),
        (
            "nickname",
            r"\bwhat(?:'s|\s+is)\s+my\s+nickname\b|\bwhat\s+do\s+(?:people|my\s+\w+|"
            r"they|friends|everyone)\s+call\s+me\b|\bwhat\s+should\s+you\s+call\s+me\b",
        ),
        ("name", r"\bwhat(?:'s|\s+is)\s+my\s+(?:full\s+|real\s+)?name\b|\bwho\s+am\s+i\b"),
        ("age", r"\bhow\s+old\s+am\s+i\b|\bwhat(?:'s|\s+is)\s+my\s+age\b"),
        ("birthday", r"\bwhen(?:'s|\s+is)\s+my\s+(?:own\s+)?birthday\b"),
    )
)
# "what's my wife's name?", "who is my wife?", "who am I married to?"
_RELATION_NAME = re.compile(
    r"\b(?:what(?:'s|\s+is)\s+(?:my|our)\s+([\w-]+?)(?:'s|’s)\s+name|who(?:'s|\s+is)\s+"
    r"(?:my|our)\s+([\w-]+)\s*\??$|what\s+is\s+(?:my|our)\s+([\w-]+)\s+called|"
    r"what(?:'s|\s+is)\s+(?:my|our)\s+([\w-]+)\s+called)"
)
_MARRIED = re.compile(
    r"\bwho\s+am\s+i\s+(?:married|engaged)\s+to\b|\bmy\s+(?:other\s+half|significant\s+other)\b"
)
_PARTNERS = ("wife", "husband", "spouse", "partner", "fiance", "fiancee", "girlfriend", "boyfriend")


def asked_slots(question: str) -> tuple[str, ...]:
    """The slots whose fact answers `question` (any one of them), or () when it asks
    anything else."""
    text = " ".join(question.lower().replace("’", "'").split())
    if _MARRIED.search(text):
        return _PARTNERS
    if m := _RELATION_NAME.search(text):
        slot = relation_slot(next(g for g in m.groups() if g))
        return (slot,) if slot else ()
    for slot, pattern in _SLOT_QUESTIONS:
        if pattern.search(text):
            return (slot,)
    return ()
