"""The offline extractor, the namespace mapping and the prompt rendering."""

from __future__ import annotations

import pytest

from engine.bot import MemoryBot
from engine.memory.extract import extract_facts
from engine.memory.namespace import memory_namespace
from engine.memory.prompt import system_prompt
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
