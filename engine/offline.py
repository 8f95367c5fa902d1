"""What the bot says when no language model is configured: honest replies built from memories.

Without an API key the bot still stores and recalls memories, so it can answer "what is my
name?" from what the user told it earlier. It must never invent anything: it states the best
recalled fact (turned from the user's words into the bot's, "My name is Bob." -> "Your name
is Bob.") or quotes the best episode as said, with its date ("On 12 Nov you said: ..."),
but only when it passes the relevance check (engine/memory/relevance.py); otherwise it says
it doesn't know. To a statement it says what it kept. Every reply is labelled offline so
nobody mistakes it for a model's answer. Everything here is pure text handling.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

from engine.memory.extract import extract_facts
from engine.memory.recall import Recalled
from engine.memory.relevance import (
    DEFAULT_MIN_SCORE,
    about_someone_else,
    answers,
    asks_about_saying,
)

__all__ = ["OFFLINE_PREFIX", "is_question", "offline_reply", "to_second_person"]

OFFLINE_PREFIX = "[offline] "

# Longest alternatives first: "I'm" must not be taken as "I" + "'m". Apostrophes may be
# typographic (phones and Slack turn ' into ’), and are kept as typed.
_FIRST_PERSON = re.compile(
    r"\b(?:call\s+me|I\s+am|I\s+was|I['’](?:m|ve|ll|d)|I(?!-)|me|my|mine|myself)\b",
    re.IGNORECASE,
)
_SECOND_PERSON = {
    "i am": "you are",
    "i was": "you were",
    "i'm": "you're",
    "i've": "you've",
    "i'll": "you'll",
    "i'd": "you'd",
    "i": "you",
    "me": "you",
    "my": "your",
    "mine": "yours",
    "myself": "yourself",
}
# Characters that may sit between a sentence end and the next sentence's first word.
_OPENERS = " \t\r\n\"'“‘(["


def _at_sentence_start(text: str, index: int) -> bool:
    before = text[:index].rstrip(_OPENERS)
    return not before or before[-1] in ".!?"


def _swap(match: re.Match[str]) -> str:
    original = match.group(0)
    key = re.sub(r"\s+", " ", original.lower()).replace("’", "'")
    start = _at_sentence_start(match.string, match.start())
    if key.startswith("call "):
        # "Call me Bobby." is a wish about the name; "Call you Bobby." would read as an order.
        replacement = "you'd like to be called" if start else "call you"
    else:
        replacement = _SECOND_PERSON[key]
    if "’" in original:
        replacement = replacement.replace("'", "’")
    if len(original) > 1 and original.isupper():  # "MY NAME IS BOB" -> "YOUR NAME IS BOB"
        return replacement.upper()
    # "I" is capitalised everywhere, so only a sentence start says "You"; "My" mid-sentence
    # was capitalised on purpose (a title, a name) and stays so.
    if start or (original[0].isupper() and key[0] != "i"):
        return replacement[0].upper() + replacement[1:]
    return replacement


def to_second_person(text: str) -> str:
    """Rewrite a memory in the user's first person into the bot's second person.

    "My name is Bob." -> "Your name is Bob."; "I'm a vegetarian." -> "You're a vegetarian.".
    Whole words only ("Amy", "Mimi" are untouched); other words are left exactly as they are.
    """
    return _FIRST_PERSON.sub(_swap, text)


_QUESTION_START = re.compile(
    # A follow-up often opens with a connective: "and what's a certificate exactly",
    # "so how do I undo it", "ok which one is faster".
    r"^\W*(?:(?:and|so|but|ok|okay|oh|also|then|wait|hmm+)\W+)?(?:what|who|where|when|which"
    r"|why|how|do|does|did|is|am|are|can|could|should|would|will|tell\s+me|remind\s+me)\b",
    re.IGNORECASE,
)
_MENTION = re.compile(r"<[@#!][^>]*>")  # Slack/Discord mentions such as <@U123>


def is_question(text: str) -> bool:
    """Whether the user is asking something: a trailing "?" or a question word up front."""
    text = _MENTION.sub(" ", text).strip()
    return bool(re.search(r"\?\W*$", text) or _QUESTION_START.match(text))


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text if text[-1] in ".!?…\"'”)" else text + "."


MAX_QUOTE_CHARS = 400
DONT_KNOW = (
    "I don't know: I'm running offline, without a language model, so I can only "
    "recall what you've told me, and I have nothing on that. "
    # The example names no person: a stranger's reply must not look like a leak.
    "Tell me, e.g. 'remember: my favourite colour is green'."
)


def _date(when: datetime, now: datetime) -> str:
    day = f"{when.day} {when.strftime('%b')}"
    return day if when.year == now.year else f"{day} {when.year}"


def _quote(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_QUOTE_CHARS:
        text = text[: MAX_QUOTE_CHARS - 1].rstrip() + "…"
    return f"“{text}”"


_FUNCTION_WORDS = frozenset(
    "a an the is am are was were be been do does did i me my mine we our us you your what "
    "who whom whose where when which why how to of in on at for with about again remind "
    "tell know any anything still now these days".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in _FUNCTION_WORDS}


def _stated(question: str, episode: str) -> str | None:
    """The fact the rules find in an episode, when it shares a content word with the
    question: "what is my name?" + "Hi! Remember: my name is Bob" -> "My name is Bob."
    (the same fact learning will store), rather than the whole message."""
    asked = _content_words(question)
    matching = [f.text for f in extract_facts(episode) if asked & _content_words(f.text)]
    return matching[0] if len(matching) == 1 else None


def _as_fact(text: str, when: datetime | None, now: datetime) -> str:
    fact = _as_sentence(to_second_person(text))
    if when:
        fact = f"{fact[:-1]} (you told me on {_date(when, now)}){fact[-1]}"
    return fact


def _answer(question: str, memory: Recalled, now: datetime) -> str | None:
    if not memory.episode:
        return _as_fact(memory.text, memory.when, now)
    if (fact := _stated(question, memory.text)) is not None:
        if not about_someone_else(question, fact, fact=True):
            return _as_fact(fact, memory.when, now)
        if not asks_about_saying(question):
            # The fact in it only names someone ("My wife is Hoa.") and the question asks
            # something else about them: the message is no answer either. (Quoting it
            # instead answered 1 more question right on the bench, said 1 more stale
            # value and declined 3 fewer never-said questions.)
            return None

    said = f"On {_date(memory.when, now)} you said" if memory.when else "You said"
    return f"{said}: {_quote(memory.text)}"


def offline_reply(
    user_text: str,
    memories: Sequence[Recalled],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    now: datetime | None = None,
) -> str:
    """The offline model's whole reply to `user_text`, given recalled memories (best first)."""
    now = now or datetime.now(UTC)
    if not is_question(user_text):
        kept = [_as_sentence(to_second_person(f.text)) for f in extract_facts(user_text)]
        if kept:
            return OFFLINE_PREFIX + "Noted: " + " ".join(kept)
        return OFFLINE_PREFIX + (
            "I've kept what you said, in your words, and can quote it back when you ask. "
            "(I'm in offline mode, without a language model.)"
        )
    for memory in answers(user_text, memories, min_score=min_score):
        if (answer := _answer(user_text, memory, now)) is not None:
            return OFFLINE_PREFIX + answer
    return OFFLINE_PREFIX + DONT_KNOW
