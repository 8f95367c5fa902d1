"""What the bot says when no language model is configured: honest replies built from memories.

Without an API key the bot still stores and recalls memories, so it can answer "what is my
name?" from what the user told it earlier. It must never invent anything: it repeats the best
recalled memory (turned from the user's words into the bot's, "My name is Bob." -> "Your name
is Bob."), admits when it knows nothing, and labels every reply as offline so nobody mistakes
it for a model's answer. Everything here is pure text handling, so it is cheap to test.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
    r"^\W*(?:what|who|where|when|which|why|how|do|does|did|is|am|are|can|could|should"
    r"|would|will|tell\s+me|remind\s+me)\b",
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


def offline_reply(user_text: str, memories: Sequence[str]) -> str:
    """The offline model's whole reply to `user_text`, given recalled memories (best first)."""
    if not is_question(user_text):
        return OFFLINE_PREFIX + (
            "Noted. I'm in offline mode (no language model), so I can only remember what "
            "you tell me and recall it when you ask."
        )
    facts = [_as_sentence(to_second_person(m)) for m in memories if m.strip()]
    if not facts:
        return OFFLINE_PREFIX + (
            "I don't know: I'm running offline, without a language model, so I can only "
            "recall what you've told me, and I have nothing on that. "
            # The example names no person: a stranger's reply must not look like a leak.
            "Tell me, e.g. 'remember: my favourite colour is green'."
        )
    reply = facts[0]
    if len(facts) > 1:
        reply += " I also remember: " + " ".join(facts[1:3])
    return OFFLINE_PREFIX + reply
