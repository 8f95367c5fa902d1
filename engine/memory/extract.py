"""The offline memory extractor: facts said in passing, caught by rules, no model needed.

Why it is built this way:

* It is the fallback when there is no language model (or the provider is down), so it must
  never invent: a missed fact costs little, a wrong one is recalled in every later prompt.
  Every rule is anchored at the start of a clause and checks what it captured (a stop-list
  after "I'm a", a capital letter for a bare name, a time expression for a trip), and the
  more generic rules ("I like ...", "I use ...") are skipped when the clause talks about
  code, because in a coding assistant "my build is failing" is far more common than a
  personal fact.
* People mention facts mid-message ("we finally moved! we're living in Braga now", "ugh,
  I'm an electrician so weekends are busy"), so a message is cut into sentences (without
  cutting at "St." or "e.g.") and clauses, filler is dropped, and each rule's value stops at
  the next connective. A bare " and " does not start a clause: "my name's Bob and I like
  tea" has always stored only the name.
* Facts are stored in the user's own first-person words ("I live in Braga."), so they read
  naturally in a prompt and the offline model can turn them into "You live in Braga."
* Some subjects have one value at a time (where you live, your job, your wife's name): they
  are slots with the fixed key "profile-<slot>", so "I live in Porto" replaces "I live in
  Braga" instead of contradicting it. Everything else (allergies, kids, hobbies) is keyed by
  its normalised text, so the same fact said twice is stored once and different ones add up.
* Rules are one table of (pattern, builder) rows with precompiled regexes, tried in order,
  the first that yields something winning: a new phrasing is one row, not another branch,
  and a message costs well under a millisecond, so it can run on every turn.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

Kind = Literal["fact", "preference", "event", "instruction"]

MAX_FACT_CHARS = 300


@dataclass(frozen=True)
class Fact:
    text: str  # one first-person sentence in the user's words, ending with "."
    kind: Kind
    key: str  # "profile-<slot>" for a slot, else "fact-<16 hex>" of the normalised text
    slot: str | None = None  # the single-valued subject it fills; None if multi-valued


@dataclass(frozen=True)
class _Ctx:
    lowercase: bool  # the user types without capitals, so capitals prove nothing
    first: bool  # the first clause with content in the message ("hi, I'm Priya")


_Out = tuple[str, Kind, str | None]  # text, kind, slot
_Builder = Callable[[re.Match[str], _Ctx], list[_Out] | None]


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern[str]
    build: _Builder
    technical: bool = True  # False: skipped when the clause is about code


# -- splitting ---------------------------------------------------------------------------

_ABBREVIATIONS = frozenset(
    "st dr mr mrs ms mx prof sr jr vs etc approx inc ltd co corp mt ft ave rd dept univ no"
    " fig jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun".split()
)
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")  # e.g, i.e, U.S, a.m (last dot is the match)
_BREAK = re.compile(r"(?P<end>[.!?…]+)[\"')\]]*(?=\s|$)|\n+|;|\s+(?:—|–|--?)\s+|(?<=\w)—(?=\w)")
_SUBJECT_AHEAD = (
    r"(?=(?:i|i'm|im|i've|ive|i'd|we|we're|we've|my|our|call\s+me|you\s+can\s+call\s+me"
    r"|everyone|everybody|people|most\s+people|friends|just\s+moved|just\s+started|joined"
    r"|started|grew\s+up|originally|based|moved)\b)"
)
_CLAUSE_BREAK = re.compile(
    r",\s*(?:and|but|so|then|plus)\s+|\s+(?:but|though|whereas)\s+|\s+so\s+"
    + _SUBJECT_AHEAD
    + r"|,\s+"
    + _SUBJECT_AHEAD,
    re.I,
)
_FILLER = re.compile(
    r"^(?:(?:hi|hello|hey|heya|hiya|yo|ok(?:ay)?|so|and|also|plus|btw|by\s+the\s+way|oh|ah"
    r"|ugh+|argh|lol|lmao|rofl|ha(?:ha)+h?|hah|hehe\w*|anyways?|well|yeah|yea|yes|yep|yup"
    r"|um+|uh+|hm+|fyi|fun\s+fact|tbh|honestly|actually|update|news|guess\s+what|good\s+news"
    r"|wow|omg|phew|alright|sure|cool|nice|great|thanks|thank\s+you|cheers|sorry|oops|i\s+mean"
    r"|now|these\s+days|nowadays|currently)\b|no(?=[,!.]))[\s,!.:;-]*",
    re.I,
)
_EDGE = re.compile(r"^[\s\"'“”‘’*_`>—–-]+|[\s\"'“”‘’*_`.!?,;:…—–-]+$")


def _sentences(message: str) -> Iterator[tuple[str, bool]]:
    """(sentence, is_question) pairs; a "." after an abbreviation or initial is no break."""
    start = 0
    for m in _BREAK.finditer(message):
        end = m["end"]
        if end and set(end) == {"."}:
            before = message[start : m.start()].split()
            word = before[-1].lstrip("(\"'") if before else ""
            if (
                word.lower() in _ABBREVIATIONS
                or _DOTTED.fullmatch(word)
                or (len(word) == 1 and word.isupper() and word != "I")
            ):
                continue
        yield message[start : m.end()], bool(end and "?" in end)
        start = m.end()
    if message[start:].strip():
        yield message[start:], False


def _clean(clause: str) -> str:
    clause = _EDGE.sub("", clause)
    while (stripped := _FILLER.sub("", clause, count=1)) != clause:
        clause = stripped
    return _EDGE.sub("", clause)


# -- values ------------------------------------------------------------------------------

_CUT = re.compile(
    r"\s*[,;:(]|\s+(?:but|so|because|cause|cos|cuz|since|though|although|(?-i:which|who)|whereas"
    r"|while|until|unless|if|when|lol|lmao|haha\w*|btw|anyway|and\s+(?=(?:i|i'm|im|i've|we"
    r"|we're|we've|my|our|it|that|this|he|she|they|you)\b))\b",
    re.I,
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_TAIL = re.compile(
    r"(?:\s+(?:now|right\s+now|these\s+days|nowadays|at\s+the\s+moment|currently|finally"
    r"|anymore|any\s+more|too|as\s+well|already|again|lol|lmao|haha\w*|btw|by\s+the\s+way"
    r"|though|actually|recently|lately|for\s+now|officially|yesterday|today|(?:last|this)"
    r"\s+(?:week|month|year|summer|spring|autumn|fall|winter|weekend)|(?:a|an|one|two|three"
    r"|four|five|six|a\s+few|a\s+couple(?:\s+of)?|\d+)\s+(?:days?|weeks?|months?|years?)\s+ago"
    r"|(?:in|since)\s+\d{4}|(?:in|since|last|this)\s+" + _MONTH + r"))+$",
    re.I,
)
_PRONOUN = frozenset(
    "it it's its this that these those them him her you your yours how what when where why"
    " which who whom here there so such".split()
)


def _cut(value: str, *, tail: bool = True) -> str:
    value = _CUT.split(value, maxsplit=1)[0]
    value = _EDGE.sub("", value)
    while tail and (shorter := _TAIL.sub("", value)) != value:
        value = shorter
    return value.strip()


def _first_word(value: str) -> str:
    words = value.split()
    return words[0].lower() if words else ""


def _capitalised(word: str) -> bool:
    ch = word[:1]
    return ch.isalpha() and not ch.islower()  # uncased scripts (Korean, Japanese) count


def _proper(value: str, ctx: _Ctx) -> bool:
    """A place or organisation: a capitalised word (after "the"), not a tech product."""
    words = value.split()
    if words and words[0].lower() == "the" and len(words) > 1:
        words = words[1:]
    if not words or words[0].lower().strip(".,") in _TECH_NAMES:
        return False
    return ctx.lowercase or _capitalised(words[0])


_TECH_NAMES = frozenset(
    "postgres postgresql mysql sqlite mongo mongodb redis kafka kubernetes k8s python python3"
    " react vue angular svelte aws gcp azure docker github gitlab bitbucket typescript"
    " javascript rust go golang java kotlin swift node nodejs slack discord jira linux mac"
    " macos windows ubuntu debian fedora vim neovim emacs vscode terraform ansible django"
    " flask fastapi rails nextjs webpack vite yarn pnpm poetry main master prod production"
    " staging dev version v1 v2 v3".split()
)
_TECHNICAL = re.compile(
    r"\b(?:code|codebase|function|func|method|class|variable|var|bugs?|errors?|exception"
    r"|traceback|stack\s*trace|builds?|compil\w*|tests?|branch\w*|commits?|pr|prs|pull\s+request"
    r"|merge|repo|repository|quer(?:y|ies)|scripts?|regex\w*|api|apis|endpoints?|servers?"
    r"|database|db|sql|deploy\w*|pipelines?|ci|files?|folders?|director(?:y|ies)|modules?"
    r"|packages?|librar(?:y|ies)|dependenc(?:y|ies)|imports?|syntax|loops?|arrays?|json|yaml"
    r"|csv|containers?|cluster|queue|crash\w*|\w+error|none|null|undefined|npm|pip|install\w*"
    r"|debug\w*|logs?|terminal|commands?|cli|docs|documentation|config\w*|prompts?|output"
    r"|refactor\w*|rename|variables?|schema|migration|dataframe|column|compiler|linter)\b",
    re.I,
)


def _tidy(text: str) -> str:
    """Typed-lowercase "i" becomes "I"; the sentence starts with a capital."""
    text = _LONE_I.sub("I", text)
    text = _IM.sub("I'm", text)
    return text[:1].upper() + text[1:]


_LONE_I = re.compile(r"(?<![\w.'-])i(?='(?:m|ve|d|ll|s)\b|[\s,;:!?)]|$)")
_IM = re.compile(r"\bim\b")


def _one(text: str, kind: Kind = "fact", slot: str | None = None) -> list[_Out]:
    return [(text, kind, slot)]


# -- shared fragments --------------------------------------------------------------------

_ADV = (
    r"(?:(?:just|finally|recently|actually|now|also|currently|still|really|only|already"
    r"|officially|happily|proudly)\s+)*"
)
_IAM = r"(?:i'?m|i\s+am)"
_WEARE = r"(?:i'?m|i\s+am|we'?re|we\s+are)"
_NUM = r"(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|\d+)"
_DAY = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs)?|fri|sat(?:ur)?|sun)(?:day)?"
_WHEN = (
    rf"(?:on\s+(?:the\s+)?(?:\d|{_DAY}\b|{_MONTH}\b)|in\s+(?:{_MONTH}\b|spring|summer|autumn"
    rf"|fall|winter|\d{{4}}|{_NUM}\s+(?:days?|weeks?|months?)|a\s+few\s+(?:days|weeks|months))"
    rf"|next\s+\w+|this\s+(?:weekend|week|month|year|summer|spring|autumn|fall|winter|{_DAY})"
    rf"|tomorrow|tonight|over\s+(?:the\s+)?(?:weekend|holidays?|christmas|easter|summer)"
    rf"|for\s+{_NUM}\s+(?:days?|nights?|weeks?|months?)|at\s+the\s+end\s+of\s+\w+"
    rf"|(?:from|between)\s+\d|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b"
    rf"|{_MONTH}\s+\d)"
)


# -- builders ----------------------------------------------------------------------------

_NAME_STOP = frozenset(
    "back later tomorrow tonight today when whenever if anytime sometime now soon maybe crazy"
    " a an the on at in please again asap after before by my your anything whatever any what"
    " you it that this".split()
)


def _name(raw: str, limit: int = 4) -> str:
    # "Bob and I like tea": a name is the first few words before any connective.
    raw = re.split(r"\s+(?:and|but|because|so|by\s+the\s+way)\s+|[,;(]", raw, maxsplit=1)[0]
    raw = _cut(raw)
    words = raw.split()
    if not words or words[0].lower() in _NAME_STOP:
        return ""
    return " ".join(words[:limit])


def _build_name(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    name = _name(m["v"])
    return _one(f"My name is {name}", slot="name") if name else None


def _build_nickname(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    name = _name(m["v"], limit=3)
    return _one(f"I like to be called {name}", slot="nickname") if name else None


_NOT_A_NAME = frozenset(
    "fine sorry back done here good ok okay well tired busy sure ready home late lost confused"
    " stuck in out off on free bored hungry happy sad sick great alright awake excited curious"
    " glad new not so just also still really very almost afraid happy thrilled nervous"
    " exhausted interested aware available away hopeful serious worried single married"
    " retired pregnant vegan vegetarian allergic from into over at with about like only"
    " always never quite pretty totally super kinda literally".split()
)
_NATIONALITY = (
    r"(?:american|british|english|scottish|welsh|irish|canadian|australian|german|french"
    r"|italian|spanish|portuguese|brazilian|mexican|argentinian|argentine|chilean|colombian"
    r"|peruvian|dutch|belgian|swiss|austrian|swedish|norwegian|danish|finnish|polish|czech"
    r"|russian|ukrainian|greek|turkish|israeli|egyptian|moroccan|nigerian|kenyan"
    r"|south\s+african|indian|pakistani|chinese|japanese|korean|vietnamese|thai|filipino"
    r"|indonesian|malaysian|singaporean|kiwi|icelandic|hungarian|romanian|croatian|serbian)"
)
_NATIONALITY_WORD = re.compile(_NATIONALITY + r"$", re.I)


def _build_intro(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    words = m["v"].split()
    if not ctx.first or not all(_capitalised(w) for w in words):
        return None
    first = words[0].lower()
    if first in _NOT_A_NAME or _NATIONALITY_WORD.match(first) or re.search(r"(?:ing|ed)$", first):
        return None
    return _one(f"My name is {' '.join(words)}", slot="name")


def _build_age(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    return _one(f"I'm {m['n']}", slot="age") if 0 < int(m["n"]) < 120 else None


def _build_nationality(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    return _one(_tidy(m[0]))


_DIET = (
    r"(?P<d>vegetarian|veggie|vegan|pescatarian|pescetarian|flexitarian|keto|paleo"
    r"|plant[\s-]based|carnivore|omnivore)"
)


def _build_diet(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    return _one(_tidy(m[0][: m.end("d") - m.start()]), slot="diet")


def _build_not_diet(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    since = " anymore" if m["longer"] or m["anymore"] else ""
    return _one(f"I'm not {m['d'].lower()}{since}", slot="diet")


def _build_allergy(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    what = _cut(m["v"])
    if not what or _first_word(what) in _PRONOUN:
        return None
    how = f"{m['how'].lower()} " if m["how"] else ""
    return _one(f"I'm {how}{m['a'].lower()} to {what}")


def _build_condition(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    return _one(f"I'm {m['v']}")


_PLACE_STOP = frozenset(
    "fear hope denial it this that there here home work school bed town the a an my our your"
    " his her their".split()
)


def _place(raw: str, ctx: _Ctx, *, proper: bool, allow_article: bool = False) -> str:
    place = _cut(re.split(r"\s+from\s+", raw, maxsplit=1, flags=re.I)[0])
    words = place.split()
    if not words or len(words) > 7 or any(w[:1].isdigit() for w in words[:1]):
        return ""
    first = words[0].lower()
    if first in ("a", "an") and allow_article:
        return place
    if first in _PLACE_STOP - {"the"} or (first == "the" and not _proper(place, ctx)):
        return ""
    if proper and not _proper(place, ctx):
        return ""
    return place


def _build_home(*, proper: bool) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        place = _place(m["v"], ctx, proper=proper, allow_article=not proper)
        return _one(f"I live in {place}", slot="home") if place else None

    return build


_VISIT = re.compile(
    r"\b(?:for\s+(?:the|a|an|one|two|three|\d+)\s+(?:weekend|week|days?|nights?|conference"
    r"|wedding|work|trip|holiday|vacation)|visiting|on\s+(?:holiday|vacation|a\s+trip|business)"
    r"|trip|holiday|vacation|hotel|airbnb|conference|until|till|staying)\b",
    re.I,
)


def _build_here_in(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    """ "Here in Tartu it gets to minus fifteen": where the speaker lives, said in passing.
    Only a capitalised place, and not while away ("here in Rome for the weekend")."""
    if ctx.lowercase or _VISIT.search(m[0]):
        return None
    words = []
    for word in m["v"].split():
        if not _capitalised(word) or word in ("I", "I'm"):
            break
        words.append(word.strip(".,;:!?"))
    place = " ".join(words[:3])
    if not place or place.lower() in _TECH_NAMES:
        return None
    return _one(f"I live in {place}", slot="home")


def _build_hometown(template: str) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        place = _place(m["v"], ctx, proper=False)
        if not place or re.search(r"\b(?:team|department|dept|support|side|future|past)\b", place):
            return None
        groups = {k: v or "" for k, v in m.groupdict().items()}
        return _one(template.format(**groups, place=place), slot="hometown")

    return build


_NOT_A_JOB = frozenset(
    "bit little lot huge big massive great good bad terrible total complete real mess idiot"
    " fool moron genius noob newbie beginner novice rookie quick fast slow hurry rush wreck"
    " disaster nervous believer sucker stickler very really pretty tad sort kind type new"
    " first-time long-time longtime regular user member customer subscriber dad mom mum"
    " father mother parent grandparent grandma grandpa man woman guy girl boy kid child adult"
    " fan lover person human bot robot single twin huge fairly bit proud happy early late"
    " night morning day creature fast slow firm strong true hard few couple part different"
    " native local tourist visitor guest pain nightmare aries taurus gemini cancer leo virgo"
    " libra scorpio sagittarius capricorn aquarius pisces".split()
)
_LIKER = re.compile(
    r"^(?:(?:really|such|so|quite)\s+)?(?:(?:big|huge|massive|great|real|total|die-?hard"
    r"|long-?time|lifelong|crazy|absolute)\s+)*(?:[\w-]+\s+)?(?:fan|lover"
    r"|person|people|owl|addict|nerd|geek|junkie|enthusiast|fanatic|snob|buff)\b",
    re.I,
)
_OCCUPATION_END = re.compile(r"\s+(?:at|for|in|with|from|on|by|near|since|who|and)\b", re.I)


def _occupation(raw: str) -> tuple[str, str]:
    """("nurse", "St. Mary's") from "nurse at St. Mary's now"; "" where there is none."""
    raw = _cut(raw)
    end = _OCCUPATION_END.search(raw)
    if end is None:
        return raw, ""
    employer = _cut(raw[end.end() :]) if end[0].strip().lower() in ("at", "for") else ""
    return _cut(raw[: end.start()]), employer


def _build_job(template: str) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        art = f"{m['art'].lower()} " if m["art"] else ""
        if _LIKER.match(m["v"]):  # "I'm a huge fan of jazz", "a morning person"
            liked = _cut(m["v"])
            return _one(f"I'm {art}{liked}", "preference") if art else None
        job, employer = _occupation(m["v"])
        words = job.split()
        if not words or len(words) > 4 or words[0].lower() in _NOT_A_JOB:
            return None
        if re.search(r"\d", job) or words[-1].lower() in _NOT_A_JOB:
            return None
        out = _one(template.format(art=art, job=job), slot="job")
        if employer and _employer_ok(employer, ctx, strict=False):
            out += _one(f"I work at {employer}", slot="employer")
        return out

    return build


_ORG_STOP = frozenset(
    "home night nights weekends weekend the a an it this that least times all my our your"
    " noon midnight work school first once".split()
)


def _employer_ok(org: str, ctx: _Ctx, *, strict: bool) -> bool:
    words = org.split()
    if not words or len(words) > 6 or words[0][:1].isdigit():
        return False
    first = words[0].lower()
    if strict:  # "joined X", "started at X": only an organisation's name
        return first not in _ORG_STOP and _proper(org, ctx)
    return first not in (_ORG_STOP - {"a", "an", "the"}) and not (
        first == "the" and len(words) > 1 and words[1].lower() in ("moment", "weekend", "end")
    )


def _build_employer(*, strict: bool) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        org = _cut(m["v"])
        if not _employer_ok(org, ctx, strict=strict):
            return None
        prep = (m.groupdict().get("prep") or "at").lower()
        return _one(f"I work {prep} {org}", slot="employer")

    return build


_RELATIONS = {
    **dict.fromkeys(["wife", "husband", "spouse", "partner", "girlfriend", "boyfriend"], ""),
    **{"gf": "girlfriend", "bf": "boyfriend", "fiancé": "fiance", "fiancée": "fiancee"},
    **dict.fromkeys(["fiance", "fiancee", "boss"], ""),
    **{"manager": "boss"},
    **dict.fromkeys(["mom", "mum", "mother", "mama", "mommy", "mummy", "ma"], "mother"),
    **dict.fromkeys(["dad", "father", "papa", "daddy", "pa"], "father"),
}
_MANY = (
    "brother sister son daughter kid child baby twin cousin best friend bff grandma grandmother"
    " grandpa grandfather granny nan nana stepson stepdaughter stepmom stepdad dog cat puppy pup"
    " kitten rabbit bunny hamster guinea pig parrot horse pony bird turtle tortoise ferret"
    " lizard snake gecko"
)
_REL = (
    r"(?P<adj>(?:little|older|younger|big|baby|eldest|oldest|youngest|elder|twin|new)\s+)?"
    r"(?P<rel>"
    + "|".join(sorted((re.escape(w) for w in _RELATIONS), key=len, reverse=True))
    + r"|best\s+friend|guinea\s+pig|"
    + "|".join(w for w in _MANY.split() if w not in ("best", "friend", "guinea", "pig"))
    + r")"
)
_NAME_WORD_STOP = frozenset(
    "and but so is was has had will would can could just always never said says told thinks"
    " the a an or i who which that loves likes hates wants".split()
)


def profile_key(slot: str) -> str:
    """The store key of a slot's fact: one per slot, so a new value replaces the old."""
    return f"profile-{slot}"


def relation_slot(rel: str) -> str | None:
    """The slot a relation's name is kept under ("mum" -> "mother"), None if many-valued."""
    rel = " ".join(rel.lower().split())
    if rel not in _RELATIONS:
        return None
    return _RELATIONS[rel] or rel


def _build_relation(*, capitalised: bool) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        words: list[str] = []
        for word in _name(m["v"], limit=2 if capitalised else 3).split():
            word = re.sub(r"'s$", "", word)
            if word.lower() in _NAME_WORD_STOP or (capitalised and not _capitalised(word)):
                break
            words.append(word)
        if not words or _NATIONALITY_WORD.match(words[0]):
            return None
        det = m["det"].capitalize()
        rel = " ".join(m["rel"].lower().split())
        rel = {"gf": "girlfriend", "bf": "boyfriend"}.get(rel, rel)
        adj = (m["adj"] or "").lower()
        text = f"{det} {adj}{rel} is {' '.join(words)}"
        return _one(text, slot=relation_slot(m["rel"]))

    return build


def _build_household(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    rest = _CUT_STRONG.split(m["rest"], maxsplit=1)[0]
    return _one(f"I have {m['n'].lower()} {m['what']}{rest.rstrip(' .!?,;:')}")


_CUT_STRONG = re.compile(r"\s+(?:but|so|because|lol|haha\w*|btw)\b", re.I)
_RELATIVE_DAY = re.compile(r"^(?:today|tomorrow|tonight|yesterday|soon|next|this|coming)\b", re.I)


def _build_birthday(lead: str) -> _Builder:
    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        when = _cut(m["v"], tail=False)
        if not when or _RELATIVE_DAY.match(when) or _first_word(when) in _PRONOUN:
            return None
        return _one(f"{lead} {when}", slot="birthday")

    return build


def _build_favourite(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    thing = " ".join((m["thing"] or "").split())
    what = _cut(m["v"])
    if not what or _first_word(what) in _PRONOUN or len(what.split()) > 8:
        return None
    if not thing:
        return _one(f"{what} is my favorite", "preference")
    slug = re.sub(r"[^\w]+", "-", thing.lower()).strip("-")
    return _one(f"My favorite {thing} is {what}", "preference", f"favourite-{slug}")


def _build_preference(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    what = _cut(m["v"])
    if not what or _first_word(what) in _PRONOUN:
        return None
    verb = " ".join(m["verb"].lower().replace("cant", "can't").replace("dont", "don't").split())
    subject = "I" if m["subj"].lower() == "i" else "We"
    return _one(f"{subject} {verb} {what}", "preference")


def _build_as_said(kind: Kind = "fact", *, tail: bool = True, object_stop=_PRONOUN) -> _Builder:
    """The clause as typed, up to where its value ends: "I usually drive a Golf"."""

    def build(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
        value = _cut(m["v"], tail=tail)
        if m["v"].strip() and (not value or _first_word(value) in object_stop):
            return None
        return _one(f"{_with_subject(m[0][: m.start('v')])} {value}".strip(), kind)

    return build


_HAVE_STOP = re.compile(
    r"\b(?:question|problem|issue|idea|meeting|call|doubt|feeling|suggestion|request|favou?r"
    r"|quick|few|couple|lot|bit|sec|second|minute|moment|look|go|try|chance|hard|deadline"
    r"|theory|hunch|thought|follow-?up|concern|task|ticket|table|list|string|dict|headache"
    r"|cold|fever|hangover|cough|question|weird|strange|similar|clue|plan|point|sense"
    r"|time|way|day|week|job\s+to\s+do|good|great|nice|bad|lovely|busy|long)\b",
    re.I,
)
_OBJECT_STOP = _PRONOUN | frozenset(
    "to into out up over back through around across away off on with for by as like a_look"
    " care place time turns part no nothing any here there home late fine".split()
)


def _build_activity(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    verb = " ".join(m["verb"].lower().split())
    value = _cut(m["v"])
    first = _first_word(value)
    if not value:
        return _one(_tidy(m[0].rstrip())) if verb in _INTRANSITIVE and not m["v"].strip() else None
    if first in _OBJECT_STOP:
        return None
    if verb.endswith(("have", "got")) and (
        not re.match(rf"{_NUM}\b|type\b|{_CONDITION}", value, re.I) or _HAVE_STOP.search(value)
    ):
        return None
    if verb == "take" and re.match(
        r"(?:a|an|the)\s+(?:look|break|while|sec|second|minute|note|"
        r"shot|stab|screenshot|step|moment|guess)\b",
        value,
        re.I,
    ):
        return None
    lead = m[0][: m.start("v") - m.start()].rstrip()
    return _one(_tidy(f"{lead} {value}"))


_CONDITION = (
    r"(?:asthma|diabetes|epilepsy|adhd|add|autism|celiac|coeliac|crohn'?s|ibs|migraines"
    r"|arthritis|dyslexia|tinnitus|anxiety|depression|allerg(?:y|ies)|eczema|psoriasis|lupus"
    r"|ms|pots|long\s+covid|hay\s+fever|high\s+blood\s+pressure)\b"
)
_INTRANSITIVE = frozenset(
    "swim surf ski snowboard climb hike cycle dance sing knit crochet paint draw cook bake run"
    " meditate garden volunteer box fence row skate sail sew".split()
)
_ACTIVITY_VERBS = (
    "play|speak|drive|ride|own|run|cook|bake|knit|crochet|paint|draw|swim|surf|ski|snowboard"
    "|climb|hike|cycle|bike|dance|sing|study|teach|volunteer|practi[cs]e|collect|carry|take|use"
    "|wear|have\\s+got|got|have|read|watch|listen\\s+to|brew|grow|garden|meditate|box"
    "|fence|row|skate|sail|sew"
)
_ACTION_VERBS = frozenset(
    "fix do try be make get have see write check look add run test go need start use call ask"
    " change update send work sleep eat buy take give find put leave stay keep learn build"
    " deploy refactor rename set merge push review bed lunch dinner breakfast".split()
)


def _build_trip(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    dest = m["dest"].strip()
    if not dest or _first_word(dest) in _ACTION_VERBS | _PRONOUN:
        return None
    if m["verb"].lower() in ("going", "heading", "off", "leaving") and not _proper(dest, ctx):
        return None
    when = _cut(m["when"], tail=False)
    lead = m[0][: m.start("dest") - m.start()]
    return _one(_tidy(f"{lead}{dest} {when}"), "event")


def _build_instruction(m: re.Match[str], ctx: _Ctx) -> list[_Out] | None:
    return _one(_tidy(m[0]), "instruction")


# -- the rules, tried in order; the first one that yields something wins ------------------

_HAVE = r"(?:(?:i|we)(?:'?ve|\s+have)?\s+got|(?:i|we)\s+have)"


def _rule(pattern: str, build: _Builder, *, technical: bool = True) -> _Rule:
    return _Rule(re.compile(pattern, re.I), build, technical)


_RULES: tuple[_Rule, ...] = (
    # name and nickname
    _rule(
        r"^(?:my\s+(?:full\s+|real\s+|first\s+)?name\s+is|my\s+name'?s|the\s+name'?s"
        rf"|{_IAM}\s+(?:called|named))\s+(?P<v>.+)$",
        _build_name,
    ),
    _rule(
        r"^(?:(?:(?:please|just|you\s+can|u\s+can|feel\s+free\s+to)\s+)*call\s+me"
        r"|(?:everyone|everybody|people|most\s+people|my\s+friends|friends|they|folks)"
        r"\s+(?:all\s+)?(?:just\s+)?calls?\s+me|i\s+(?:usually\s+|mostly\s+)?go\s+by"
        rf"|{_IAM}\s+(?:also\s+)?known\s+as)\s+(?P<v>.+)$",
        _build_nickname,
    ),
    _rule(rf"^{_IAM}\s+(?P<v>[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*)?)\s*(?:,.*)?$", _build_intro),
    _rule(
        rf"^(?:{_IAM}|i\s+just\s+turned|i\s+turned|just\s+turned)\s+(?P<n>\d{{1,3}})"
        r"(?:\s*(?:years?\s+old|yrs?\s+old|y/?o))?$",
        _build_age,
    ),
    _rule(
        rf"^{_IAM}\s+(?:(?:half|part|originally)\s+)?{_NATIONALITY}"
        rf"(?:[\s-]+{_NATIONALITY})?$",
        _build_nationality,
    ),
    # diet and health
    _rule(
        rf"^(?:{_WEARE}\s+)?(?:not|(?P<longer>no\s+longer))\s+(?:an?\s+)?{_DIET}"
        r"(?P<anymore>\s+(?:anymore|any\s+more))?\b",
        _build_not_diet,
    ),
    _rule(
        rf"^{_WEARE}\s+{_ADV}(?:an?\s+)?(?:(?:strict|full|fully|mostly|mainly|pretty\s+much)\s+)?"
        rf"{_DIET}\b",
        _build_diet,
    ),
    _rule(
        rf"^(?:{_WEARE}\s+)?(?P<how>(?:very|severely|deathly|super|quite|mildly|slightly|highly)"
        r"\s+)?(?P<a>allergic|intolerant|sensitive)\s+to\s+(?P<v>.+)$",
        _build_allergy,
    ),
    _rule(
        # Casual chat drops the "I'm" before a condition: "lactose intolerant since forever".
        r"^(?P<v>(?:lactose|gluten|dairy|fructose|histamine)[\s-]+intolerant|celiac|coeliac"
        r"|(?:pre-?)?diabetic|asthmatic|epileptic)(?:\s+(?:since|for|my\s+whole|all\s+my)\b.*)?$",
        _build_condition,
    ),
    _rule(
        rf"^{_IAM}\s+(?:also\s+)?(?P<v>(?:lactose|gluten|dairy|fructose|histamine)[\s-]+intolerant"
        r"|gluten[\s-]free|dairy[\s-]free|celiac|coeliac|(?:pre-?)?diabetic|asthmatic"
        r"|epileptic|deaf|hard\s+of\s+hearing|colou?r[\s-]?blind|kosher|halal|sober"
        r"|teetotal)\b",
        _build_condition,
    ),
    # where they live and come from
    _rule(rf"^(?:(?:i|we)\s+)?{_ADV}(?:live|reside)\s+in\s+(?P<v>.+)$", _build_home(proper=False)),
    _rule(
        rf"^(?:{_WEARE}\s+)?{_ADV}(?:living|residing|based|settled)\s+(?:in|out\s+of)\s+"
        r"(?P<v>.+)$",
        _build_home(proper=False),
    ),
    _rule(
        rf"^(?:(?:i|we)(?:'?ve|\s+have)?\s+)?{_ADV}(?:moved|relocated)\s+(?:back\s+)?"
        r"(?:here\s+)?(?:from\s+.+?\s+)?to\s+(?P<v>.+)$",
        _build_home(proper=True),
    ),
    _rule(
        rf"^{_WEARE}\s+(?:now\s+|currently\s+)?in\s+(?P<v>.+?)\s+(?:these\s+days|nowadays|now"
        r"|at\s+the\s+moment|for\s+now)$",
        _build_home(proper=True),
    ),
    _rule(
        rf"^(?:{_WEARE}\s+(?P<orig>originally\s+)?|(?P<o2>originally\s+))from\s+(?P<v>.+)$",
        _build_hometown("I'm {orig}{o2}from {place}"),
    ),
    _rule(
        r"^(?:i|we)\s+(?P<orig>originally\s+)?come\s+from\s+(?P<v>.+)$",
        _build_hometown("I {orig}come from {place}"),
    ),
    _rule(r"^(?:(?:i|we)\s+)?grew\s+up\s+in\s+(?P<v>.+)$", _build_hometown("I grew up in {place}")),
    _rule(
        r"^(?:(?:i|we)\s+(?:was|were)\s+)?(?P<how>born(?:\s+and\s+(?:raised|bred))?)\s+in\s+"
        r"(?P<v>\D.*)$",
        _build_hometown("I was {how} in {place}"),
    ),
    # work
    _rule(
        rf"^{_IAM}\s+{_ADV}(?:working\s+as\s+)?(?P<art>an?)\s+(?P<v>.+)$",
        _build_job("I'm {art}{job}"),
    ),
    _rule(
        r"^(?:i\s+)?(?:(?:currently|now|also|still|actually)\s+)?work\s+as\s+(?:(?P<art>an?)\s+)?"
        r"(?P<v>.+)$",
        _build_job("I work as {art}{job}"),
    ),
    _rule(
        rf"^(?:(?:i|we)\s+|{_WEARE}\s+)?{_ADV}(?:work|working)\s+(?P<prep>at|for)\s+(?P<v>.+)$",
        _build_employer(strict=False),
    ),
    _rule(
        rf"^(?:(?:i|we)(?:'?ve|\s+have)?\s+)?{_ADV}(?:started(?:\s+(?:working|a\s+(?:new\s+)?"
        r"(?:job|role|position)))?\s+(?:at|with)|joined)\s+(?P<v>.+)$",
        _build_employer(strict=True),
    ),
    # people and pets
    _rule(
        rf"^(?P<det>my|our)\s+{_REL}(?:'s\s+name\s+is|\s+name\s+is|\s+is\s+(?:called|named)"
        r"|,?\s+(?:called|named))\s+(?P<v>.+)$",
        _build_relation(capitalised=False),
    ),
    _rule(
        rf"^(?P<det>my|our)\s+{_REL}(?:\s+is|,)?\s+(?P<v>.+)$",
        _build_relation(capitalised=True),
    ),
    _rule(
        rf"^{_HAVE}\s+(?P<n>{_NUM})\s+(?P<what>(?:[\w-]+\s+)?(?:kids?|children|child|sons?"
        r"|daughters?|boys?|girls?|dogs?|cats?|pets?|grandkids|grandchildren|twins|siblings"
        r"|brothers?|sisters?|puppies|puppy|kittens?))\b(?P<rest>.*)$",
        _build_household,
    ),
    # dates
    _rule(
        r"^my\s+(?:birthday|bday|b-day|birth\s+date|date\s+of\s+birth)(?:\s+is|'s|\s+falls)"
        r"\s+(?P<v>.+)$",
        _build_birthday("My birthday is"),
    ),
    _rule(
        r"^(?:i\s+was\s+)?born\s+on\s+(?P<v>.+)$",
        _build_birthday("I was born on"),
    ),
    _rule(
        r"^(?P<lead>(?:i|we)(?:'?ve|\s+have)?\s+got|(?:i|we)\s+have)\s+(?:an?|my|our)\s+"
        r"(?:[\w-]+\s+){0,2}(?:appointment|interview|exam|flight|trip|wedding|surgery|operation"
        rf"|concert|race|marathon|holiday|vacation|gig|recital|check-?up)\s+(?P<v>{_WHEN}.*)$",
        _build_as_said("event", tail=False),
        technical=False,
    ),
    _rule(
        r"^(?:my|our)\s+(?:wedding|flight|trip|surgery|interview|exam|holiday|vacation"
        rf"|due\s+date)\s+is\s+(?P<v>{_WHEN}.*)$",
        _build_as_said("event", tail=False),
        technical=False,
    ),
    _rule(
        rf"^(?:{_WEARE}|(?:i|we)'?ll\s+be|(?:i|we)\s+will\s+be)\s+{_ADV}(?P<verb>flying|going"
        r"|travel(?:l)?ing|heading|driving|off|leaving|moving|taking\s+a\s+trip|visiting)\s+"
        rf"(?:(?:back|over|out|down|up)\s+)?(?:to\s+)?(?P<dest>.+?)\s+(?P<when>{_WHEN}.*)$",
        _build_trip,
        technical=False,
    ),
    # likes and dislikes
    _rule(
        r"^my\s+(?:all[\s-]time\s+)?fav(?:ou?rite|e)?\s+(?P<thing>[\w\s-]{1,40}?)\s+(?:is|are"
        r"|has\s+to\s+be|would\s+be)\s+(?P<v>.+)$",
        _build_favourite,
        technical=False,
    ),
    _rule(
        r"^(?P<v>.{1,60}?)\s+(?:is|are)\s+my\s+(?:all[\s-]time\s+)?fav(?:ou?rite|e)?"
        r"(?:\s+(?P<thing>[\w\s-]{1,40}))?$",
        _build_favourite,
        technical=False,
    ),
    _rule(
        r"^(?P<subj>i|we)\s+(?:(?:really|truly|absolutely|just|also|still|do|kinda|kind\s+of"
        r"|sort\s+of|totally|genuinely|honestly|actually|particularly)\s+)*(?P<verb>like|love"
        r"|enjoy|prefer|adore|hate|dislike|detest|loathe|can'?t\s+stand|cannot\s+stand"
        r"|don'?t\s+like|do\s+not\s+like|don'?t\s+enjoy)\s+(?P<v>.+)$",
        _build_preference,
        technical=False,
    ),
    _rule(
        rf"^{_IAM}\s+(?:(?:really|so|super|very|totally|kinda)\s+)?(?:into|obsessed\s+with"
        r"|passionate\s+about|crazy\s+about|mad\s+about|a\s+(?:huge\s+|big\s+)?fan\s+of)\s+"
        r"(?P<v>.+)$",
        _build_as_said("preference"),
        technical=False,
    ),
    # standing instructions for the bot
    _rule(
        r"^(?:please\s+)?(?:always|never|from\s+now\s+on,?(?:\s+please)?)\s+(?:reply|respond"
        r"|answer|write|talk|speak|use|give|keep|call|address|include|format|explain|greet"
        r"|sign|mention|ask)\b.*$",
        _build_instruction,
    ),
    # what they do
    _rule(
        rf"^(?:(?:(?:i|we)(?:'?ve|\s+have)\s+)?been|{_WEARE})\s+{_ADV}(?:learning|studying"
        r"|training\s+for|practi[cs]ing|teaching|taking\s+(?:\w+\s+)?(?:lessons|classes))"
        r"\s+(?P<v>.+)$",
        _build_as_said(),
        technical=False,
    ),
    _rule(
        r"^(?:(?:i|we)(?:'?ve|\s+have)\s+)?been\s+\w+ing\s+(?P<v>.*?\bfor\s+(?:\d+|a|an|one|two"
        r"|three|four|five|six|seven|eight|nine|ten|many|several|a\s+few|over|almost|nearly"
        r"|about)\b.*\b(?:years?|months?|decades?)\b.*)$",
        _build_as_said(),
        technical=False,
    ),
    _rule(
        rf"^(?:(?:i|we)\s+)?(?:(?:have|'ve)\s+)?{_ADV}(?:started|stopped|quit|gave\s+up)\s+"
        r"(?P<v>(?:eating|drinking|smoking|vaping)\b.*)$",
        _build_as_said(),
    ),
    _rule(
        # A pastime begun or dropped: "started bouldering at the wall", "took up running".
        rf"^(?:(?:i|we)\s+)?(?:(?:have|'ve)\s+)?{_ADV}(?:started|took\s+up|taken\s+up"
        r"|picked\s+up|stopped|quit|gave\s+up)\s+(?!(?:thinking|feeling|getting|going|looking"
        r"|wondering|trying|having|doing|using|making|seeing|noticing|reali[sz]ing|worrying"
        r"|wanting|talking|asking|working|coming|waiting|saying|telling|hearing|being|letting"
        r"|taking|putting|writing|planning|preparing|packing|leaving|moving|building"
        r"|testing|coding|debugging|fixing|crying|laughing|panicking|sweating|shaking|freaking"
        r"|screaming|reading\s+(?:the|this|that|it|your))\b)"
        r"(?P<v>[a-z]+ing\b.*)$",
        _build_as_said(),
        technical=False,
    ),
    _rule(
        r"^(?:i|we)\s+(?:don'?t|do\s+not|never|no\s+longer|can'?t|cannot)\s+(?:eat|drink|smoke"
        r"|touch|stomach|tolerate|digest)\b"
        r"(?P<v>.*)$",
        _build_as_said(),
        technical=False,
    ),
    _rule(
        r"^(?P<det>my|our)\s+(?:car|phone|bike|motorbike|laptop)\s+is\s+an?\s+(?P<v>.+)$",
        _build_as_said(object_stop=_PRONOUN | _NOT_A_JOB),
        technical=False,
    ),
    _rule(
        r"^(?:i|we)(?:'?ve(?=\s+got))?\s+(?:(?:also|still|really|usually|often|sometimes"
        r"|regularly|mostly|mainly|just|only|always|do|actually)\s+)*"
        rf"(?P<verb>{_ACTIVITY_VERBS})\b(?P<v>.*)$",
        _build_activity,
        technical=False,
    ),
    # Last: a clause that says nothing else may still say where the speaker is.
    _rule(r"^(?:.*?\s)?(?:out\s+)?here\s+in\s+(?P<v>.+)$", _build_here_in),
)


def _with_subject(lead: str) -> str:
    """The lead-in of a clause said without its subject: "been learning" -> "I've been
    learning", "started eating" -> "I started eating"."""
    lead = lead.strip()
    if re.match(r"been\b", lead, re.I):
        return f"I've {lead}"
    if re.match(r"(?:started|stopped|quit|gave|joined|moved|took|picked)\b", lead, re.I):
        return f"I {lead}"
    return lead


# -- public API --------------------------------------------------------------------------

_REMEMBER = re.compile(
    r"^(?:please\s+)?(?:remember|don'?t\s+forget|note)\b(?:\s+that)?\s*[:,-]?\s*(?P<rest>.+)$",
    re.I | re.S,
)


def extract_facts(message: str) -> list[Fact]:
    """Facts stated in `message`, in order, deduplicated by key (a later one wins)."""
    message = (message or "").replace("’", "'").replace("‘", "'")
    lowercase = not any(ch.isupper() for ch in message)
    found: dict[str, Fact] = {}
    first = True
    for sentence, asked in _sentences(message):
        if not _clean(sentence):
            continue
        ctx = _Ctx(lowercase=lowercase, first=first)
        first = False
        if asked:
            continue  # "is my name Bob?" asks, it does not tell
        for fact in _sentence_facts(sentence, ctx):
            found.pop(fact.key, None)
            found[fact.key] = fact
    return list(found.values())


def _sentence_facts(sentence: str, ctx: _Ctx) -> list[Fact]:
    cleaned = _clean(sentence)
    if m := _REMEMBER.match(cleaned):
        rest = _clean(m["rest"])
        # A recognisable statement is stored like any other; anything else as said.
        return _sentence_facts(rest, ctx) or ([_fact(_tidy(rest), "fact")] if rest else [])
    facts: list[Fact] = []
    for part in _CLAUSE_BREAK.split(sentence):
        if clause := _clean(part):
            facts.extend(_clause_facts(clause, ctx))
            ctx = _Ctx(ctx.lowercase, first=False)
    return facts


def _clause_facts(clause: str, ctx: _Ctx) -> list[Fact]:
    technical = None
    for rule in _RULES:
        m = rule.pattern.match(clause)
        if m is None:
            continue
        if not rule.technical:
            if technical is None:
                technical = bool(_TECHNICAL.search(clause))
            if technical:
                continue
        out = rule.build(m, ctx)
        if out:
            return [_fact(_tidy(text), kind, slot) for text, kind, slot in out]
    return []


def _fact(text: str, kind: Kind, slot: str | None = None) -> Fact:
    text = _EDGE.sub("", text.strip())[:MAX_FACT_CHARS]
    text = f"{text[:1].upper()}{text[1:]}."
    if slot is not None:
        return Fact(text=text, kind=kind, key=profile_key(slot), slot=slot)
    normalised = " ".join(re.sub(r"[^\w\s]", "", text.lower()).split())
    digest = hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return Fact(text=text, kind=kind, key=f"fact-{digest}")


_CORRECTION = re.compile(
    r"\b(?:now|actually|anymore|any\s+more|no\s+longer|moved\b(?:\s+\S+){0,4}?\s+to|moving\s+to"
    r"|switched\s+(?:to|from|over)|changed\s+(?:to|my|our)|relocated|instead|these\s+days"
    r"|nowadays|(?:i|we)\s+used\s+to|(?:my|our)\s+new|new\s+(?:job|role|position|address|place"
    r"|flat|apartment|house|home|city|name|nickname|number|phone|email|boss|manager|partner"
    r"|girlfriend|boyfriend|wife|husband|team|company|employer|diet))\b"
    r"|\bnot\s+[\w'-]+(?:\s+[\w'-]+){0,2},?\s+but\b"
    # A job or a home left or begun: "I started at Birchwood", "quit the cafe", "last day at
    # the old place", "got promoted", "just moved", "got the keys".
    r"|\b(?:(?:i|we)\s+(?:just\s+)?started\s+(?:at|with|as|working|work|a\s+new)|quit\s+(?:my|the|our)"
    r"|left\s+(?:my|the)\s+(?:job|firm|company)|last\s+day\s+(?:at|was)|got\s+promoted"
    r"|(?:just|finally)\s+moved|got\s+the\s+keys)\b",
    re.I,
)


def is_correction(message: str) -> bool:
    """Whether the message says something changed ("I'm a nurse now", "not Lisbon but
    Porto"), so a fact it states should replace an old one rather than sit beside it.
    Questions signal nothing: "do you still live in Lisbon now?" asks."""
    message = (message or "").replace("’", "'")
    return any(not asked and _CORRECTION.search(s) for s, asked in _sentences(message))
