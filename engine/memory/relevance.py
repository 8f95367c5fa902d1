"""Does a recalled memory answer the question, or is "I don't know" the honest answer?

The offline model has no language understanding, so it must not state the best search
hit just because it is the best: "what's my brother's name?" finds "my name is Hyun-woo"
(same words, same shape) and stating it would be confidently wrong. Two checks decide:

1. The hybrid score (dense cosine + saturated BM25 + recency; see engine/store/hybrid.py)
   must clear a threshold calibrated on `bench/memory_quality.py` (answerable vs
   never-said questions), not guessed.
2. A cross-check for the near miss that scores cannot see: who the question is about.
   If it names a person, pet or thing of the user's ("my brother", "my dog"), the memory
   must be about the same one; if it asks about the user's own attribute ("my name",
   "my birthday"), a memory giving that attribute of someone else ("my sister's name")
   does not answer it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.memory.recall import Recalled

# Calibrated on bench/memory_quality.py (see the README): the hybrid score below which a
# hit is not taken as an answer.
DEFAULT_MIN_SCORE = 0.3

# Who or what a question can be about besides the user: (category, group) by the words
# people use. Two groups of one category are different beings: a memory about the
# user's son does not answer a question about their daughter.
_RELATIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("family", "brother"): ("brother", "bro", "brothers"),
    ("family", "sister"): ("sister", "sis", "sisters"),
    ("family", "mother"): ("mother", "mom", "mum", "mama", "mommy", "mummy"),
    ("family", "father"): ("father", "dad", "papa", "daddy"),
    ("family", "son"): ("son", "sons"),
    ("family", "daughter"): ("daughter", "daughters"),
    ("family", "grandparent"): ("grandma", "grandpa", "grandmother", "grandfather", "granny"),
    ("family", "aunt"): ("aunt", "auntie"),
    ("family", "uncle"): ("uncle",),
    ("family", "cousin"): ("cousin", "cousins"),
    ("family", "niece"): ("niece",),
    ("family", "nephew"): ("nephew",),
    ("partner", "wife"): ("wife",),
    ("partner", "husband"): ("husband", "hubby"),
    ("partner", "girlfriend"): ("girlfriend", "gf"),
    ("partner", "boyfriend"): ("boyfriend", "bf"),
    ("partner", "fiance"): ("fiance", "fiancé", "fiancee", "fiancée"),
    ("work", "boss"): ("boss", "manager"),
    ("home", "roommate"): ("roommate", "flatmate", "housemate"),
    ("pet", "dog"): ("dog", "dogs", "puppy", "pup"),
    ("pet", "cat"): ("cat", "cats", "kitten", "kitty"),
    ("pet", "rabbit"): ("rabbit", "bunny"),
    ("pet", "horse"): ("horse", "pony"),
    ("pet", "bird"): ("bird", "parrot", "budgie"),
    ("pet", "fish"): ("goldfish",),
}
# Words that name a whole category (my kids = my son or daughter; a partner = any).
_UMBRELLAS: dict[str, str] = {
    "kid": "family", "kids": "family", "child": "family", "children": "family",
    "partner": "partner", "spouse": "partner", "pet": "pet", "pets": "pet",
}
_GROUPS: dict[str, tuple[str, str]] = {
    word: relation for relation, words in _RELATIONS.items() for word in words
}

_WORD = re.compile(r"[^\W\d_]+(?:['’][a-z]+)?", re.IGNORECASE)
# The thing asked about after a possessive: "my brother's NAME", "our dog's BREED".
_OWNED = re.compile(r"\b(?:my|our)\s+(?:(\w+)(?:'s|’s|s')\s+)?(\w+)", re.IGNORECASE)


# A question after someone's name, and a memory giving the user's own.
_NAMING = re.compile(r"\b(?:name|names|called|named|call)\b", re.IGNORECASE)
_OWN_NAME = re.compile(
    r"\b(?:my\s+name|call\s+me|calls\s+me|i\s+go\s+by|i'?m\s+called|name'?s)\b", re.IGNORECASE
)


def _relations(text: str) -> tuple[set[tuple[str, str]], set[str]]:
    """The specific relations a text names, and the categories it names wholesale."""
    found: set[tuple[str, str]] = set()
    umbrellas: set[str] = set()
    for word in _WORD.findall(text.lower()):
        word = re.sub(r"['’]s$", "", word)
        if word in _GROUPS:
            found.add(_GROUPS[word])
        elif word in _UMBRELLAS:
            umbrellas.add(_UMBRELLAS[word])
    return found, umbrellas


def about_someone_else(question: str, memory: str, *, fact: bool = False) -> bool:
    """True when the memory is about someone (or something) other than the one the
    question asks about, so it cannot answer it. A `fact` is a normalised sentence: if it
    does not name whom the question is about, it is not about them ("I like to be called
    Woody" says nothing of a brother); an episode may say "she" or a pet's name instead."""
    asked, asked_any = _relations(question)
    said, said_any = _relations(memory)
    lowered = memory.lower()
    for category, group in asked:
        if (category, group) in said or category in said_any:
            continue
        if fact:
            return True
        if any(c == category for c, _ in said):
            return True  # "my daughter's name?" vs "my son Leo"
        if _NAMING.search(question) and _OWN_NAME.search(memory):
            return True  # "what's my dog called?" vs "my name is Bob"
        for owner, thing in _OWNED.findall(question.lower()):
            if owner and _GROUPS.get(owner) == (category, group):
                if re.search(rf"\b(?:my|our)\s+{re.escape(thing)}\b", lowered):
                    return True  # "my brother's age?" vs "my age is 34"
    if not asked and not asked_any:
        for owner, thing in _OWNED.findall(question.lower()):
            if owner or thing in _GROUPS or thing in _UMBRELLAS:
                continue
            own = re.search(rf"\b(?:my|our)\s+{re.escape(thing)}\b", lowered)
            others = re.search(rf"(\w+)(?:'s|’s|s')\s+{re.escape(thing)}\b", lowered)
            if others and not own and others.group(1) in _GROUPS:
                return True  # "my birthday?" vs "my son's birthday is in June"
    return False


def answers(
    question: str, memories: Sequence[Recalled], *, min_score: float = DEFAULT_MIN_SCORE
) -> list[Recalled]:
    """The recalled memories that may answer `question`, best first (maybe none)."""
    return [
        m
        for m in memories
        if (m.relevance is None or m.relevance >= min_score)
        and not about_someone_else(question, m.text, fact=not m.episode)
    ]
