"""The offline rule extractor: facts said in passing, slots for single-valued subjects, and
nothing from questions, requests or talk about code."""

from __future__ import annotations

import re

import pytest

from engine.memory.extract import MAX_FACT_CHARS, Fact, extract_facts, is_correction

Expected = list[tuple[str, str | None]]  # (text, slot)


def facts_of(message: str) -> Expected:
    return [(f.text, f.slot) for f in extract_facts(message)]


POSITIVE: list[tuple[str, Expected]] = [
    # occupation and employer
    ("I'm an electrician so weekends are busy", [("I'm an electrician.", "job")]),
    ("I'm a nurse now", [("I'm a nurse.", "job")]),
    ("ugh, I'm a student", [("I'm a student.", "job")]),
    (
        "I work as a nurse at St. Mary's",
        [("I work as a nurse.", "job"), ("I work at St. Mary's.", "employer")],
    ),
    (
        "I'm a senior software engineer at a fintech startup",
        [("I'm a senior software engineer.", "job"), ("I work at a fintech startup.", "employer")],
    ),
    ("I work at Acme", [("I work at Acme.", "employer")]),
    ("I work for Acme", [("I work for Acme.", "employer")]),
    ("I just started at Spotify", [("I work at Spotify.", "employer")]),
    ("joined Stripe last month", [("I work at Stripe.", "employer")]),
    ("been teaching for 10 years", [("I've been teaching for 10 years.", None)]),
    # home and hometown
    ("I live in Lisbon", [("I live in Lisbon.", "home")]),
    ("we're living in Braga now", [("I live in Braga.", "home")]),
    ("we finally moved! we're living in Braga now", [("I live in Braga.", "home")]),
    ("we moved to Porto", [("I live in Porto.", "home")]),
    ("I just moved to Oslo", [("I live in Oslo.", "home")]),
    ("I moved from Berlin to Lisbon last month", [("I live in Lisbon.", "home")]),
    ("based in Berlin", [("I live in Berlin.", "home")]),
    ("I'm in Toronto these days", [("I live in Toronto.", "home")]),
    ("we live in Utrecht", [("I live in Utrecht.", "home")]),
    ("I'm from Busan", [("I'm from Busan.", "hometown")]),
    ("grew up in Leeds", [("I grew up in Leeds.", "hometown")]),
    ("originally from Cork", [("I'm originally from Cork.", "hometown")]),
    # names
    (
        "my name is Hyun-woo but everyone calls me Woody",
        [("My name is Hyun-woo.", "name"), ("I like to be called Woody.", "nickname")],
    ),
    ("hi, I'm Priya", [("My name is Priya.", "name")]),
    ("I'm Priya, nice to meet you", [("My name is Priya.", "name")]),
    ("people call me Woody", [("I like to be called Woody.", "nickname")]),
    ("I go by Sam", [("I like to be called Sam.", "nickname")]),
    # people and pets
    ("my wife Mariko and I went hiking", [("My wife is Mariko.", "wife")]),
    ("my husband is called Tom", [("My husband is Tom.", "husband")]),
    ("my partner Sam", [("My partner is Sam.", "partner")]),
    ("my sister's name is Ana", [("My sister is Ana.", None)]),
    ("my son Leo", [("My son is Leo.", None)]),
    ("my mum is called Carol", [("My mum is Carol.", "mother")]),
    ("my dad, Jim, is retired", [("My dad is Jim.", "father")]),
    ("my boss is Alice", [("My boss is Alice.", "boss")]),
    ("my dog Biscuit", [("My dog is Biscuit.", None)]),
    ("btw our cat Miso hates mornings", [("Our cat is Miso.", None)]),
    (
        "we've got two kids, Leo's 7 and Ana just turned 4",
        [("I have two kids, Leo's 7 and Ana just turned 4.", None)],
    ),
    # health and diet
    ("it can't have peanuts, I carry an EpiPen", [("I carry an EpiPen.", None)]),
    ("I'm allergic to shellfish", [("I'm allergic to shellfish.", None)]),
    ("I'm vegetarian", [("I'm vegetarian.", "diet")]),
    ("I'm vegan", [("I'm vegan.", "diet")]),
    (
        "not vegetarian anymore, started eating fish",
        [("I'm not vegetarian anymore.", "diet"), ("I started eating fish.", None)],
    ),
    ("I'm lactose intolerant", [("I'm lactose intolerant.", None)]),
    ("I'm gluten-free", [("I'm gluten-free.", None)]),
    ("I have asthma", [("I have asthma.", None)]),
    # possessions, activities, dates
    ("I drive a Golf", [("I drive a Golf.", None)]),
    ("I have a Tesla", [("I have a Tesla.", None)]),
    ("I play the cello", [("I play the cello.", None)]),
    ("I've been learning Japanese", [("I've been learning Japanese.", None)]),
    ("I speak Portuguese", [("I speak Portuguese.", None)]),
    ("I run marathons", [("I run marathons.", None)]),
    ("I'm training for a half marathon", [("I'm training for a half marathon.", None)]),
    ("my birthday is on 3 May", [("My birthday is on 3 May.", "birthday")]),
    ("my birthday's in June", [("My birthday is in June.", "birthday")]),
    ("I'm 34", [("I'm 34.", "age")]),
    # preferences
    ("I love hiking", [("I love hiking.", None)]),
    ("I can't stand cilantro", [("I can't stand cilantro.", None)]),
    ("my favourite band is Radiohead", [("My favorite band is Radiohead.", "favourite-band")]),
    ("Dune is my favourite book", [("My favorite book is Dune.", "favourite-book")]),
    ("I'm a huge fan of jazz", [("I'm a huge fan of jazz.", None)]),
    # A condition said without its "I'm", as people type in chat.
    ("gluten intolerant since I was a kid", [("I'm gluten intolerant.", None)]),
    # What someone can't eat, in the words people use for it.
    ("I can't stomach coffee anymore", [("I can't stomach coffee.", None)]),
    ("I can't touch peanuts, I swell up", [("I can't touch peanuts.", None)]),
    # Where someone lives, said in passing ("here in …"), if nothing else was said.
    ("Here in Leeds it rains all week.", [("I live in Leeds.", "home")]),
    ("it's freezing out here in Oklahoma City", [("I live in Oklahoma City.", "home")]),
    ("I work at Acme here in London", [("I work at Acme here in London.", "employer")]),
    # A pastime taken up.
    ("took up running last spring", [("I took up running.", None)]),
    (
        "started crocheting at the community centre a few weeks ago and I love it",
        [("I started crocheting at the community centre.", None)],
    ),
]


@pytest.mark.parametrize(("message", "expected"), POSITIVE)
def test_facts_said_in_passing_are_caught(message: str, expected: Expected) -> None:
    assert facts_of(message) == expected


NEGATIVE = [
    # task chat
    "I need to rename this variable",
    "I'm trying to fix the build",
    "I think the job queue is stuck",
    "my code throws a KeyError",
    "my build keeps failing",
    "I want a regex for emails",
    "I'd like a regex for emails",
    "my function returns None",
    "my PR is failing",
    "my laptop battery is dying",
    "I hate when my build fails",
    "I use this function a lot",
    "I run into this error every time",
    "I have a question",
    "I have two files",
    "I'm going to fix the build next week",
    "we moved to Postgres last year",
    # requests and questions
    "can you help me",
    "write me a poem about cats",
    "call me back later",
    "call me by my first name",
    "do you know where I live?",
    "I live in Lisbon, where do you live?",
    "is my name Bob?",
    # adjectives, feelings and other non-facts
    "I'm a bit tired",
    "I'm an idiot",
    "I'm a little confused about async",
    "I'm Fine",
    "I'm Sorry, I'm Back",
    "hello! I'm Done",
    "I'm not a nurse",
    "I'm in a meeting these days",
    "my wife is Japanese",
    "my bday is tomorrow",
    "I love this!",
    "I like your answer",
    "I joined a gym",
    # no home, condition or pastime
    "we're here in Rome for the weekend",  # away, not home
    "here in the office we use Jira",  # no place name
    "here in Python you need a loop",
    "gluten free pasta is great",  # a food, not a condition
    "started thinking about it",  # not a pastime
    "I started using docker at work",
    "started crying lol",
]


@pytest.mark.parametrize("message", NEGATIVE)
def test_nothing_is_stored_from_task_chat_questions_or_feelings(message: str) -> None:
    assert extract_facts(message) == []


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("I work as a nurse at St. Mary's now", [("I work at St. Mary's.", "employer")]),
        ("I see Dr. Patel for my asthma. I live in Leeds", [("I live in Leeds.", "home")]),
        ("we moved to the U.S. last year", [("I live in the U.S.", "home")]),
        ("I like hot drinks, e.g. tea and cocoa", [("I like hot drinks.", None)]),
        ("My boss is Mr. Smith", [("My boss is Mr. Smith.", "boss")]),
    ],
)
def test_abbreviations_do_not_end_a_sentence(message: str, expected: Expected) -> None:
    assert [f for f in facts_of(message) if f in expected] == expected
    assert all(not text.endswith(("St.", "Dr.", "Mr.")) for text, _ in facts_of(message))


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "I'm from Lisbon but I live in Porto now",
            [("I'm from Lisbon.", "hometown"), ("I live in Porto.", "home")],
        ),
        (
            "I'm a software engineer at Google. My wife Mariko is a doctor.",
            [
                ("I'm a software engineer.", "job"),
                ("I work at Google.", "employer"),
                ("My wife is Mariko.", "wife"),
            ],
        ),
        (
            "I'm allergic to cats, and I have asthma",
            [("I'm allergic to cats.", None), ("I have asthma.", None)],
        ),
        (
            "ok so I'm a huge fan of jazz — I play the cello\nand we're going to Kyoto in April",
            [
                ("I'm a huge fan of jazz.", None),
                ("I play the cello.", None),
                ("We're going to Kyoto in April.", None),
            ],
        ),
    ],
)
def test_several_facts_in_one_message(message: str, expected: Expected) -> None:
    assert facts_of(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("i'm an electrician", [("I'm an electrician.", "job")]),
        ("im a nurse", [("I'm a nurse.", "job")]),
        ("my name is bob", [("My name is bob.", "name")]),
        ("i live in braga now", [("I live in braga.", "home")]),
        ("lol i've been learning japanese", [("I've been learning japanese.", None)]),
        ("joined stripe last month", [("I work at stripe.", "employer")]),
    ],
)
def test_lowercase_typing_is_understood_and_tidied(message: str, expected: Expected) -> None:
    assert facts_of(message) == expected


def test_slots_have_fixed_keys_and_other_facts_are_keyed_by_content() -> None:
    (lisbon,) = extract_facts("I live in Lisbon")
    (porto,) = extract_facts("actually we moved to Porto")
    assert lisbon.key == porto.key == "profile-home"
    (name,) = extract_facts("hi, I'm Priya")
    (nickname,) = extract_facts("call me Pri")
    assert (name.key, nickname.key) == ("profile-name", "profile-nickname")
    (shellfish,) = extract_facts("I'm allergic to shellfish")
    (again,) = extract_facts("i'm ALLERGIC to shellfish!!")
    (nuts,) = extract_facts("I'm allergic to nuts")
    assert shellfish.key == again.key != nuts.key
    assert shellfish.slot is None and re.fullmatch(r"fact-[0-9a-f]{16}", shellfish.key)


def test_kinds() -> None:
    kinds = {f.text: f.kind for f in extract_facts("I love hiking. I'm flying to Lima on 12 March")}
    assert kinds == {"I love hiking.": "preference", "I'm flying to Lima on 12 March.": "event"}
    (rule,) = extract_facts("always reply in Portuguese")
    assert (rule.text, rule.kind) == ("Always reply in Portuguese.", "instruction")
    (job,) = extract_facts("I'm a nurse")
    assert job.kind == "fact"


def test_a_later_value_for_the_same_slot_wins() -> None:
    assert facts_of("I live in Lisbon. No, wait, I live in Porto") == [("I live in Porto.", "home")]


def test_explicit_remember_stores_unrecognised_text_as_said() -> None:
    assert facts_of("remember: standup is at 10, not 9") == [("Standup is at 10, not 9.", None)]
    assert facts_of("don't forget my wife is called Mariko") == [("My wife is Mariko.", "wife")]


def test_facts_are_bounded_and_well_formed() -> None:
    for message, _ in POSITIVE:
        for fact in extract_facts(message):
            assert isinstance(fact, Fact)
            assert fact.text.endswith(".") and fact.text[0].isupper()
            assert len(fact.text) <= MAX_FACT_CHARS + 1
            pattern = f"profile-{fact.slot}" if fact.slot else r"fact-[0-9a-f]{16}"
            assert re.fullmatch(pattern, fact.key)
    (long,) = extract_facts("I love " + "very " * 500 + "long walks")
    assert len(long.text) <= MAX_FACT_CHARS + 1


@pytest.mark.parametrize(
    "message",
    [
        "I'm a nurse now",
        "actually it's Porto",
        "I'm not vegetarian anymore",
        "I no longer work at Acme",
        "we moved to Porto",
        "I switched to decaf",
        "not Lisbon but Porto",
        "I have a new job at Spotify",
        "my new address is 5 Rua Augusta",
        "I started at Globex on monday, nervous",
        "I started work at the hospital",
        "we just started working with a new agency",
        "I quit the bakery last week",
        "left my job at the council",
        "last day at the old place was friday",
        "got promoted to sous chef!!",
        "we finally moved, boxes everywhere",
        "got the keys to the flat in Leith",
    ],
)
def test_corrections_are_recognised(message: str) -> None:
    assert is_correction(message)


@pytest.mark.parametrize(
    "message",
    [
        "I live in Lisbon",
        "my name is Bob",
        "I know",
        "snow is nice",
        "do you live in Porto now?",
        "the film started at nine",
        "I left my keys at home",
        "did you quit the project?",
    ],
)
def test_plain_statements_and_questions_are_not_corrections(message: str) -> None:
    assert not is_correction(message)
