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

# Calibrated on bench/memory_quality.py (see the README): the relevance (dense + BM25
# part of the hybrid score) below which a hit is not taken as an answer. 0.22 answered
# 0.57 of answerable questions right and said "I don't know" to 0.55 of never-said ones;
# 0.25 gave 0.55 / 0.59, 0.20 gave 0.57 / 0.53 (before the cross-checks, the same
# accuracy came with 0.10-0.28 of never-said questions declined).
DEFAULT_MIN_SCORE = 0.22

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
    ("family", "grandparent"): (
        "grandma",
        "grandpa",
        "grandmother",
        "grandfather",
        "granny",
        "grandparents",
        "nan",
        "nana",
        "gran",
    ),
    ("family", "grandchild"): (
        "grandson",
        "granddaughter",
        "grandchild",
        "grandchildren",
        "grandkid",
        "grandkids",
        "grandsons",
        "granddaughters",
    ),
    ("family", "in-law"): (
        "mother-in-law",
        "father-in-law",
        "sister-in-law",
        "brother-in-law",
        "in-laws",
        "son-in-law",
        "daughter-in-law",
    ),
    ("family", "stepchild"): ("stepson", "stepdaughter", "stepkid", "stepkids"),
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
    # People name a pet by its breed as often as by "dog": "the greyhound", "our lab".
    ("pet", "dog"): (
        "dog",
        "dogs",
        "puppy",
        "pup",
        "doggo",
        "greyhound",
        "whippet",
        "lurcher",
        "labrador",
        "retriever",
        "goldendoodle",
        "labradoodle",
        "cockapoo",
        "poodle",
        "terrier",
        "spaniel",
        "beagle",
        "chihuahua",
        "dachshund",
        "sausage dog",
        "husky",
        "collie",
        "sheepdog",
        "german shepherd",
        "pug",
        "bulldog",
        "frenchie",
        "corgi",
        "rottweiler",
        "doberman",
        "schnauzer",
        "shih tzu",
        "pomeranian",
        "dalmatian",
        "vizsla",
        "weimaraner",
        "mutt",
    ),
    ("pet", "cat"): (
        "cat",
        "cats",
        "kitten",
        "kitty",
        "tabby",
        "siamese",
        "ragdoll",
        "maine coon",
        "sphynx",
        "moggy",
        "tomcat",
    ),
    ("pet", "rabbit"): ("rabbit", "bunny"),
    ("pet", "horse"): ("horse", "pony"),
    ("pet", "bird"): ("bird", "parrot", "budgie", "cockatiel", "canary"),
    ("pet", "fish"): ("goldfish",),
    ("pet", "hedgehog"): ("hedgehog",),
    ("pet", "hamster"): ("hamster", "gerbil"),
    ("pet", "guinea pig"): ("guinea pig", "guinea pigs", "cavy"),
    ("pet", "reptile"): ("tortoise", "turtle", "lizard", "gecko", "snake", "axolotl"),
    ("pet", "ferret"): ("ferret",),
}
# Words that name a whole category (my kids = my son or daughter; a partner = any).
_UMBRELLAS: dict[str, str] = {
    "kid": "family",
    "kids": "family",
    "child": "family",
    "children": "family",
    "twins": "family",
    "youngest": "family",
    "eldest": "family",
    "oldest": "family",
    "baby": "family",
    "partner": "partner",
    "spouse": "partner",
    "pet": "pet",
    "pets": "pet",
}
_GROUPS: dict[str, tuple[str, str]] = {
    word: relation for relation, words in _RELATIONS.items() for word in words
}

# Every relation word, longest first so "sister-in-law" is not read as "sister" and
# "sausage dog" is one word; a possessive or plural "s" may follow.
_RELATION_WORDS = re.compile(
    r"(?<![\w-])("
    + "|".join(
        re.escape(w).replace(r"\ ", r"\s+")
        for w in sorted([*_GROUPS, *_UMBRELLAS], key=len, reverse=True)
    )
    + r")(?:['’]s|s['’]|['’])?(?![\w-])"
)
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
    for match in _RELATION_WORDS.finditer(text.lower()):
        word = re.sub(r"\s+", " ", match.group(1))
        if word in _GROUPS:
            found.add(_GROUPS[word])
        else:
            umbrellas.add(_UMBRELLAS[word])
    return found, umbrellas


def about_someone_else(question: str, memory: str, *, fact: bool = False) -> bool:
    """True when the memory is about someone (or something) other than the one the
    question asks about, so it cannot answer it. A memory must name whom the question is
    about ("my brother", "our dog"); a `fact` that only gives a relation's name ("My wife
    is Hoa.") answers who they are, not what they do."""
    asked, asked_any = _relations(question)
    said, said_any = _relations(memory)
    lowered = memory.lower()
    for category, group in asked:
        if (category, group) in said or category in said_any:
            continue
        # Neither a fact (normalised) nor an episode that never names them is about them:
        # "he's into vinyl" might be anyone, "I like to be called Woody" is not the
        # brother, "my son Leo" is not the daughter. (Measured: letting a matching "he"/
        # "she" stand in for the relation answered 0 more questions right and abstained on
        # 9 % fewer never-said ones, on bench/memory_quality.py.)
        return True
    if fact and (relation_name := _RELATION_NAME.match(memory)) and not _ASKS_NAME.search(question):
        if asked:
            return True  # "what does my wife do?" vs "My wife is Hoa." (a name, no job)
        named = relation_name.group(1).lower()
        if _ASKS_DETAIL.match(question) and re.search(rf"\b{re.escape(named)}\b", question.lower()):
            return True  # "what does Keisha do?" vs "My girlfriend is Keisha." (same)
    if not asked and not asked_any:
        for owner, thing in _OWNED.findall(question.lower()):
            if owner or thing in _GROUPS or thing in _UMBRELLAS:
                continue
            own = re.search(rf"\b(?:my|our)\s+{re.escape(thing)}\b", lowered)
            others = re.search(rf"(\w+)(?:'s|’s|s')\s+{re.escape(thing)}\b", lowered)
            if others and not own and others.group(1) not in _CONTRACTIONS:
                return True  # "my birthday?" vs "my son's / Diya's birthday is in June"
    return False


# What kind of answer a question wants, and whether a memory has one of that kind: a
# memory with no number cannot say how old someone is. "When did I tell you …" is asked
# of the memory's date, not its text, so it wants nothing of the text.
_ASKS_NUMBER = re.compile(r"\b(?:how\s+(?:old|many|much|long|far|tall)|what\s+age)\b", re.I)
_ASKS_TIME = re.compile(
    r"^\W*(?:when\b|what\s+(?:date|day|time|month|year)\b|which\s+(?:date|day|month|year)\b)",
    re.I,
)
_ASKS_ABOUT_SAYING = re.compile(
    r"\b(?:did|have)\s+i\s+(?:\w+\s+)?(?:tell|told|say|said|mention|ask|talk|bring|share)", re.I
)
_ASKS_NAME = re.compile(r"\b(?:name|names|called|named)\b|^\W*who\b", re.I)
_NUMBER = re.compile(
    r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|"
    r"forty|fifty|sixty|seventy|eighty|ninety|hundred|dozen|half|a\s+(?:couple|few))\b",
    re.I,
)
_TIME_WORDS = re.compile(
    r"\d|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|"
    r"\b(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?s?\b|"
    r"\b(?:today|tomorrow|yesterday|tonight|week|weekend|month|year|morning|evening|night|"
    r"spring|summer|autumn|fall|winter|christmas|easter|ago|next|last)\b",
    re.I,
)
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][^\s,.;:!?]*")
_POSSESSIVE = re.compile(r"\b(\w+)(?:'s|’s)\b")
_CONTRACTIONS = frozenset(
    "he she it that what there here who let where how when everyone everything one".split()
)
_RELATION_NAME = re.compile(
    r"^(?:[Mm]y|[Oo]ur)\s+[\w-]+\s+(?:is|are)\s+([A-Z][\w'-]*)(?:\s+[A-Z][\w'-]*)?\.?$"
)
# A question after a detail (what they do, where, when, how), not who someone is.
_ASKS_DETAIL = re.compile(r"^\W*(?:what|where|when|which|how)\b", re.I)


def _has_name(memory: str, question: str) -> bool:
    if memory != memory.lower():  # typed with capitals: a capitalised word past the start
        names = [
            m
            for m in _CAPITALISED.finditer(memory)
            if m.group(0) not in ("I", "I'm", "I've", "I'd", "I'll")
        ]
        asked = [w for w in _WORD.findall(question.lower()) if w in _GROUPS]
        mentions = [
            m.start() for w in asked for m in re.finditer(rf"\b{re.escape(w)}", memory.lower())
        ]
        if not mentions:
            return bool(names)
        # The name must stand by the relation ("my dad Tom", "Tom, my dad"), not anywhere:
        # "flights to Hong Kong for my dad's 70th" gives no name of the dad.
        return any(abs(n.start() - at) <= 24 for n in names for at in mentions)
    # All lowercase: a possessive that is not "he's"/"it's", or the word after the relation.
    if any(m.group(1).lower() not in _CONTRACTIONS for m in _POSSESSIVE.finditer(memory)):
        return True
    for word in _WORD.findall(question.lower()):
        if word in _GROUPS and re.search(rf"\b{re.escape(word)}\s+(?!is\b|was\b|and\b)\w+", memory):
            return True
    return False


def asks_about_saying(question: str) -> bool:
    """ "When did I tell you about …": answered by when a message was sent, not its text."""
    return bool(_ASKS_ABOUT_SAYING.search(question))


def fits_the_question(question: str, memory: str) -> bool:
    """Whether the memory holds an answer of the kind the question asks for."""
    if asks_about_saying(question):
        return True
    if _ASKS_NUMBER.search(question) and not _NUMBER.search(memory):
        return False
    if _ASKS_TIME.search(question) and not _TIME_WORDS.search(memory):
        return False
    if _ASKS_NAME.search(question) and not _has_name(memory, question):
        return False
    return True


# A hit this far (relative) below the best one is no answer even when the best one is
# ruled out: if the closest memory is about something else, a much weaker one rarely
# holds the answer. (Bench: "I don't know" to never-said questions 0.55 -> 0.59 at 0.4,
# answerable accuracy unchanged; 0.3 said one more stale value, 0.1 nine more.)
FAR_BELOW_BEST = 0.4

# Of answers whose scores are this close (relative), the newest is stated: two statements
# on one subject score alike, and the later one is the true one now. (Bench: stale values
# stated 3 -> 2 at 0.05, answerable accuracy unchanged; 0.10 cost accuracy.)
NEWER_WITHIN = 0.05


def answers(
    question: str, memories: Sequence[Recalled], *, min_score: float = DEFAULT_MIN_SCORE
) -> list[Recalled]:
    """The recalled memories that may answer `question`, best first (maybe none)."""
    fitting = _fitting(question, memories, min_score=min_score)
    if fitting and fitting[0].score is None:  # a slot's fact, read by key
        # Its rivals are judged by meaning alone: the slot, not the similarity to the
        # best hit, says what the question is about.
        return _newer_change_first(fitting[0], fitting)
    best = max((m.relevance for m in memories if m.relevance is not None), default=None)
    far_below = best * (1 - FAR_BELOW_BEST) if best is not None else min_score
    found = [m for m in fitting if m.relevance is None or m.relevance >= far_below]
    if len(found) < 2:
        return found
    floor = found[0].score * (1 - NEWER_WITHIN)
    close = [m for m in found if m.score is not None and m.score >= floor and m.when]
    if close:
        newest = max(close, key=lambda m: m.when or found[0].when)
        found = [newest, *[m for m in found if m is not newest]]
    return found


def _fitting(question: str, memories: Sequence[Recalled], *, min_score: float) -> list[Recalled]:
    """The memories relevant enough, about the right one, with an answer of the right kind."""
    return [
        m
        for m in memories
        if (m.relevance is None or m.relevance >= min_score)
        and not about_someone_else(question, m.text, fact=not m.episode)
        and fits_the_question(question, m.text)
    ]


def _newer_change_first(fact: Recalled, rivals: list[Recalled]) -> list[Recalled]:
    """A slot's fact (read by key) is stale when the person said something changed after
    it that learning has not made a fact of yet ("I started at Kestrel on monday" after
    "I work at Paylane"): the newer message goes first."""
    others = [m for m in rivals if m is not fact]
    newer = [m for m in others if m.changed and m.when and fact.when and m.when > fact.when]
    if not newer:
        return [fact, *others]
    first = max(newer, key=lambda m: m.relevance or 0.0)
    return [first, fact, *[m for m in others if m is not first]]
