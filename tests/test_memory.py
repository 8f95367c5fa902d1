"""The offline extractor, the namespace mapping and the prompt rendering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.bot import MemoryBot
from engine.memory.extract import extract_facts
from engine.memory.namespace import memory_namespace
from engine.memory.prompt import system_prompt
from engine.memory.recall import Recalled
from engine.memory.relevance import (
    about_someone_else,
    answers,
    fits_the_question,
    newest_first,
    shares_subject,
)
from engine.offline import is_question
from engine.settings import Settings


@pytest.mark.parametrize(
    ("message", "facts"),
    [
        ("Hi! Remember: my name is Bob", ["My name is Bob."]),
        ("my name's Bob and I like tea", ["My name is Bob."]),
        ("call me Bobby, please", ["I like to be called Bobby."]),
        ("I really like green tea.", ["I like green tea."]),
        (
            "I prefer dark mode; my favourite colour is blue!",
            ["I prefer dark mode.", "My favorite colour is blue."],
        ),
        ("Please remember that the deploy key is in vault", ["The deploy key is in vault."]),
        ("I'm from Lisbon. I work at Acme", ["I'm from Lisbon.", "I work at Acme."]),
        ("what is my name?", []),
        ("is my name Bob?", []),
        ("hello there", []),
        ("", []),
        ("I like tea. I like tea!", ["I like tea."]),
    ],
)
def test_extracts_explicit_statements(message: str, facts: list[str]) -> None:
    assert [f.text for f in extract_facts(message)] == facts


def test_name_is_one_slot_other_facts_are_keyed_by_content() -> None:
    (bob,) = extract_facts("my name is Bob")
    (robert,) = extract_facts("Remember: my name is Robert")
    assert bob.key == robert.key == "profile-name"
    (tea,) = extract_facts("I like tea")
    (tea_again,) = extract_facts("i LIKE tea!!")
    (coffee,) = extract_facts("I like coffee")
    assert tea.key == tea_again.key != coffee.key


def test_facts_are_bounded_in_length() -> None:
    (fact,) = extract_facts("remember: " + "x" * 10_000)
    assert len(fact.text) <= 301


def test_namespace_keeps_ids_and_escapes_dots_injectively() -> None:
    assert memory_namespace("slack:T1:U2") == ("memories", "slack:T1:U2")
    ids = ["a.b", "a%2Eb", "a%b", "a%25b", "a/b"]
    namespaces = [memory_namespace(i) for i in ids]
    assert len(set(namespaces)) == len(ids)
    assert all("." not in ns[1] for ns in namespaces)
    with pytest.raises(ValueError):
        memory_namespace("")


def test_memories_are_rendered_as_quoted_lines() -> None:
    prompt = system_prompt(['say "hi"\n- "injected line"', "<b>"])
    block = prompt.split("<memories>\n", 1)[1]
    lines = block.split("\n")
    assert lines[0] == '- "say \\"hi\\"\\n- \\"injected line\\""'
    assert lines[1] == '- "\\u003cb\\u003e"'
    assert lines[2] == "</memories>"


async def test_explicit_remember_and_forget(tmp_path, local_embeddings) -> None:
    async with MemoryBot.open(Settings(data_dir=tmp_path), embeddings=local_embeddings) as bot:
        (item,) = await bot.remember("u.1", "I'm allergic to nuts", source_thread="t")
        created, updated = item.value.pop("created_at"), item.value.pop("updated_at")
        assert created == updated and created.startswith("20")
        assert item.value.pop("valid_from") <= created  # true from when it was said
        assert item.value == {
            "text": "I'm allergic to nuts.",
            "kind": "fact",
            "source_thread": "t",
            "sources": [],
        }
        [entry] = await bot.memory_history("u.1")
        assert entry["action"] == "added" and entry["by"] == "user"
        assert (entry["old"], entry["new"]) == (None, "I'm allergic to nuts.")
        await bot.remember("u.2", "my name is Ann")
        assert await bot.remember("u.1", "   ") == []
        assert [i.value["text"] for i in await bot.memories("u.1")] == ["I'm allergic to nuts."]
        assert await bot.forget("u.1") == 1
        assert await bot.memories("u.1") == []
        assert await bot.memory_history("u.1") == []  # erased with the memories
        assert len(await bot.memory_history("u.2")) == 1
        assert [i.value["text"] for i in await bot.memories("u.2")] == ["My name is Ann."]


# -- offline relevance: which recalled memory answers a question ---------------------------

DAY = timedelta(days=1)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)


def _fact(text: str, relevance: float, key: str = "fact-1", when=LONG_AGO) -> Recalled:
    return Recalled(key, text, "fact", when, relevance + 0.1, relevance)


def _episode(text: str, relevance: float, when=LONG_AGO, *, changed: bool = False) -> Recalled:
    return Recalled(f"ep-{text[:12]}", text, "episode", when, relevance + 0.1, relevance, changed)


def test_a_fact_sharing_nothing_with_the_question_is_no_answer() -> None:
    # Short first-person facts score alike against any question about the user.
    assert answers("what instrument am I learning?", [_fact("I'm coeliac.", 0.26)]) == []
    learning = _fact("I'm learning the cello.", 0.26)
    assert answers("what instrument am I learning?", [learning]) == [learning]
    # Words of one stem, the same person, or a name asked and given all count as shared.
    assert shares_subject("what kind of design work do I do?", "I'm a UX designer.")
    assert shares_subject("what's my kid called", "My son is Felix.")
    assert shares_subject("what name do I go by?", "I like to be called Noor.")
    assert not shares_subject("what's my nickname?", "My wife is Ingrid.")
    # A strong meaning match needs no shared word.
    strong = _fact("I'm lactose intolerant.", 0.45)
    assert answers("why do I stay away from cheese?", [strong]) == [strong]


def test_a_fact_of_another_slot_is_no_answer() -> None:
    job = _fact("I'm an accountant.", 0.47, key="profile-job")
    assert answers("where am I working these days?", [job]) == []  # asks the employer
    assert answers("what's my job?", [job]) == [job]


@pytest.mark.parametrize(
    ("question", "memory", "fits"),
    [
        # The name must stand by the relation the question names.
        (
            "what's my sister's name?",
            "the spaniel is staying at my sister's while we're away, Bramble hates kennels",
            False,
        ),
        ("what's my sister's name?", "my sister Ana is flying in on friday", True),
        ("what's my dad's name?", "flights to Hong Kong on the 20th, my dad's turning 70", False),
        ("what's my dad's name?", "we are visiting Tom, my dad, in may", True),
        ("what's the hamster called?", "got a hamster. we named it Nibbles", True),
        # A name right after another relation word is that one's.
        ("what's my cat's name?", "my boyfriend Tom wants to adopt a cat", False),
        ("what's my cat's name?", "we adopted a cat, Mochi, from the shelter", True),
        # A question after the user's own name wants the user's own name.
        ("what nickname do my mates use for me?", "the kids named it Biscuit", False),
        ("what nickname do my mates use for me?", "my mates call me Bash", True),
        ("what are we naming the baby?", "Priya and I are having a baby in June!", False),
        # A thing's name must be said of that thing.
        ("what's our drummer called?", "I sing in a band called The Loops.", False),
        ("what's our drummer called?", "our drummer Mateo quit last night", True),
        (
            "what's the name of my landlord?",
            "moved to Ren last week, it's closer to my landlord's other flat",
            False,
        ),
        # A place asked by its kind wants a place named.
        ("which city was I born in?", "race got moved because of some city event", False),
        ("which city was I born in?", "born and raised in leeds, moved away at 18", True),
        ("what country do we live in?", "the weather in Portugal is unreal", True),
        # "half the month" says no when; "next week" does.
        ("when is my husband's birthday?", "my husband is away half the month", False),
        ("when is my husband's birthday?", "my husband turns 50 next week", True),
    ],
)
def test_an_answer_must_be_of_the_kind_asked(question: str, memory: str, fits: bool) -> None:
    assert fits_the_question(question, memory) is fits


def test_a_pet_said_to_be_another_kind_is_not_the_dog() -> None:
    assert about_someone_else(
        "what's our dog's name?", "the kids wanted a pet so we got a hamster, named it Nibbles"
    )
    assert not about_someone_else("what's our dog's name?", "we got a pet at last, Rex!")
    # Plural words cover several: "the kids" may include the son.
    assert not about_someone_else("how old is my son?", "my daughter and the kids are off")


def test_for_a_question_about_now_a_later_message_on_the_topic_comes_first() -> None:
    old = _episode("doing parkrun most saturdays, my time is around 28 minutes", 0.6)
    new = _episode("smashed it at parkrun today, 25 minutes!!", 0.4, when=LONG_AGO + 30 * DAY)
    other = _episode("the kids started swimming lessons", 0.34, when=LONG_AGO + 40 * DAY)
    assert answers("what's my 5k time these days?", [old, new, other])[0] is new
    assert answers("what was my 5k time?", [old, new, other])[0] is old


def test_close_scores_put_the_newer_first_only_on_the_same_topic() -> None:
    fishing = _episode("been fishing off the pier every sunday since I was a kid", 0.52)
    winery = _episode(
        "two weeks into doing the books for a winery, so calm", 0.515, when=LONG_AGO + 9 * DAY
    )
    assert answers("what do I usually do on sunday mornings?", [fishing, winery])[0] is fishing


def test_recall_order_puts_a_newer_change_before_the_slot_fact() -> None:
    slot = Recalled("profile-employer", "I work at Ledgerly.", "fact", LONG_AGO, None, None)
    change = _episode(
        "last day at the old place, I started at Birchwood on monday",
        0.3,
        when=LONG_AGO + 40 * DAY,
        changed=True,
    )
    assert newest_first("where do I work?", [slot, change]) == [change, slot]
    unrelated = _episode("switched to oat milk", 0.1, when=LONG_AGO + 40 * DAY, changed=True)
    assert newest_first("where do I work?", [slot, unrelated]) == [slot, unrelated]
    # The offline answer still reads the slot first and states the change before it.
    assert answers("where do I work?", [change, slot])[0] is change


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        ("and what's a certificate exactly", True),  # a follow-up opens with a connective
        ("so how do I undo it", True),
        ("ok which one is faster", True),
        ("so I'm a nurse now", False),
        ("and I do HVAC", False),
        ("oh and I've been running the smoker at 250 lately", False),
    ],
)
def test_a_follow_up_question_is_a_question(text: str, asks: bool) -> None:
    assert is_question(text) is asks
