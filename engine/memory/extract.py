"""The offline memory extractor: explicit statements only, no model needed.

It catches what people say when they *want* the bot to remember ("remember: ...",
"my name is ...", "call me ...", "I like/prefer ...") and keeps each fact in the
user's own first-person words, so it reads naturally in a prompt and the offline
model can answer "Your name is Bob." A later issue adds LLM extraction; this stays as
its fallback.

Single-valued facts (name, preferred form of address) get a fixed slot key, so a new
name replaces the old one; every other fact is keyed by its normalised text, so the
same fact said twice is stored once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["fact", "preference", "event", "instruction"]

MAX_FACT_CHARS = 300

_CLAUSES = re.compile(r"(?<=[.!?;\n])\s+|\n+")
_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|don'?t\s+forget|note)\b(?:\s+that)?\s*[:,-]?\s*(?P<rest>.+)$",
    re.I,
)
_NAME = re.compile(
    r"^(?:my\s+name\s+is|my\s+name'?s|i\s+am\s+called|i'?m\s+called)\s+(?P<name>.+)$", re.I
)
_CALL_ME = re.compile(r"^(?:please\s+)?call\s+me\s+(?P<name>.+)$", re.I)
_PREFERENCE = re.compile(
    r"^i\s+(?:really\s+|do\s+)?(?P<verb>like|love|enjoy|prefer|hate|dislike|can'?t\s+stand)\s+"
    r"(?P<what>.+)$",
    re.I,
)
_FAVOURITE = re.compile(r"^my\s+favou?rite\s+(?P<thing>[\w\s-]{1,40}?)\s+is\s+(?P<what>.+)$", re.I)
_ABOUT_ME = re.compile(
    r"^(?:i\s+live\s+in|i'?m\s+from|i\s+am\s+from|i\s+work\s+(?:at|as|on|for)|i'?m\s+a|i\s+am\s+a"
    r"|i\s+have\s+a|my\s+\w+(?:\s+\w+)?\s+is)\s+.+$",
    re.I,
)
_LEADING_FILLER = re.compile(r"^(?:hi|hello|hey|ok|okay|so|and|also|btw|oh)\b[\s,!.]*", re.I)
_TRAILING = re.compile(r"[\s.!?,;:]+$")


@dataclass(frozen=True)
class Fact:
    text: str
    kind: Kind
    key: str


def extract_facts(message: str) -> list[Fact]:
    """Facts stated explicitly in `message`, deduplicated, in order of appearance."""
    found: dict[str, Fact] = {}
    for clause in _CLAUSES.split(message or ""):
        if clause.rstrip().endswith("?"):
            continue  # "is my name Bob?" asks, it does not tell
        fact = _fact(_clean(clause), explicit=False)
        if fact is not None:
            found[fact.key] = fact
    return list(found.values())


def _clean(clause: str) -> str:
    clause = clause.strip().strip("\"'“”‘’")
    while (stripped := _LEADING_FILLER.sub("", clause, count=1)) != clause:
        clause = stripped
    return _TRAILING.sub("", clause)


def _fact(clause: str, *, explicit: bool) -> Fact | None:
    if not clause:
        return None
    if m := _REMEMBER.match(clause):
        return _fact(_clean(m["rest"]), explicit=True)
    if m := _NAME.match(clause):
        return _slot("name", f"My name is {_name(m['name'])}")
    if m := _CALL_ME.match(clause):
        return _slot("nickname", f"I like to be called {_name(m['name'])}")
    if m := _FAVOURITE.match(clause):
        return _keyed(f"My favorite {m['thing'].strip()} is {m['what']}", "preference")
    if m := _PREFERENCE.match(clause):
        return _keyed(f"I {m['verb'].lower()} {m['what']}", "preference")
    if _ABOUT_ME.match(clause) or explicit:
        return _keyed(_sentence_case(clause), "fact")
    return None


def _name(raw: str) -> str:
    # "Bob and I like tea" is rare in practice; a name is the first few words.
    words = re.split(r"\s+(?:and|but|because|so)\s+|,", raw, maxsplit=1)[0].split()
    return " ".join(words[:4])


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


def _finish(text: str) -> str:
    text = _TRAILING.sub("", text.strip())[:MAX_FACT_CHARS]
    return f"{_sentence_case(text)}."


def _slot(slot: str, text: str) -> Fact:
    return Fact(text=_finish(text), kind="fact", key=f"profile-{slot}")


def _keyed(text: str, kind: Kind) -> Fact:
    text = _finish(text)
    normalised = " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())
    digest = hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Fact(text=text, kind=kind, key=f"fact-{digest}")
