"""Episodes and facts with time, through `MemoryBot` on the default offline path: what a
person said is recallable in the next thread at once, an update supersedes the old value
(which is never stated again), a never-said question gets "I don't know", and `/forget`
erases episodes, facts, history and journaled learning."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine.bot import MemoryBot
from engine.memory.manager import MEMORY_TOOL
from engine.memory.namespace import memory_namespace
from engine.memory.outbox import Pending
from engine.memory.questions import asked_slots
from engine.memory.recall import recall
from engine.memory.records import EPISODES_ONLY, FACTS_ONLY, episode_key, history_namespace
from engine.settings import Settings
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.llm_settings import fake_llm_settings

DONT_KNOW = "I don't know"
LEARN_NEVER = 3600.0  # a debounce no test outlives: nothing is learnt unless flushed


def offline(data_dir: Path, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, llm_provider="offline", **extra)


@pytest.fixture
async def bot(tmp_path: Path, local_embeddings) -> AsyncIterator[MemoryBot]:
    async with MemoryBot.open(
        offline(tmp_path, memory_debounce_seconds=LEARN_NEVER), embeddings=local_embeddings
    ) as opened:
        yield opened


async def test_said_in_one_thread_is_recalled_in_the_next_with_no_learning(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="we finally moved! we're living in Braga now")
    # Learning has not run (the writer waits an hour): the episode alone answers.
    assert bot.writer.pending("u1") == ["a"]
    reply = await bot.chat(user_id="u1", thread_id="b", text="which city do I live in?")
    assert "Braga" in reply.text, reply.text
    assert bot.writer.pending("u1") == ["a", "b"]  # still nothing flushed for the turn
    facts = await bot.store.asearch(memory_namespace("u1"), filter=FACTS_ONLY)
    assert facts == []  # the answer came from the episode


async def test_an_answer_from_an_episode_quotes_it_with_its_date(bot) -> None:
    said = datetime(2026, 3, 12, 9, 30, tzinfo=UTC)
    await bot.chat(
        user_id="u1",
        thread_id="a",
        at=said,
        text="my son can't have peanuts, I carry an EpiPen for him",
    )
    reply = await bot.chat(user_id="u1", thread_id="b", text="what can't my son have?")
    assert "On 12 Mar 2026 you said" in reply.text or "On 12 Mar you said" in reply.text
    assert "peanuts" in reply.text


async def test_a_statement_is_answered_with_what_was_kept(bot) -> None:
    reply = await bot.chat(user_id="u1", thread_id="a", text="I'm an electrician, busy weekends")
    assert reply.text.startswith("[offline] Noted:") and "electrician" in reply.text
    chatter = await bot.chat(user_id="u1", thread_id="a", text="the build keeps failing on main")
    assert "Noted" not in chatter.text and "kept what you said" in chatter.text
    [episode] = [e for e in await bot.episodes("u1") if "build" in e.value["text"]]
    assert episode.value["text"] == "the build keeps failing on main"


async def test_a_never_said_question_gets_i_dont_know(bot) -> None:
    await bot.chat(
        user_id="u1", thread_id="a", text="my name is Hyun-woo but everyone calls me Woody"
    )
    await bot.flush_memories()
    brother = await bot.chat(user_id="u1", thread_id="b", text="what's my brother's name?")
    assert DONT_KNOW in brother.text and "Hyun-woo" not in brother.text
    nickname = await bot.chat(user_id="u1", thread_id="c", text="what do people call me?")
    assert "Woody" in nickname.text
    stranger = await bot.chat(user_id="u2", thread_id="d", text="what is my name?")
    assert DONT_KNOW in stranger.text and "Hyun-woo" not in stranger.text


async def test_questions_are_kept_but_never_recalled(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="what is my favourite colour?")
    again = await bot.chat(user_id="u1", thread_id="b", text="what is my favourite colour?")
    assert DONT_KNOW in again.text
    kinds = sorted(e.value["kind"] for e in await bot.episodes("u1"))
    assert kinds == ["question", "question"]


async def test_an_update_supersedes_and_the_old_value_is_never_stated(bot) -> None:
    start = datetime.now(UTC) - timedelta(days=30)
    await bot.chat(user_id="u1", thread_id="a", text="I live in Lisbon", at=start)
    await bot.flush_memories()
    await bot.chat(
        user_id="u1", thread_id="b", text="I live in Porto now", at=start + timedelta(days=20)
    )
    await bot.flush_memories()
    for thread in ("c", "d"):
        reply = await bot.chat(user_id="u1", thread_id=thread, text="where do I live?")
        assert "Porto" in reply.text and "Lisbon" not in reply.text, reply.text
    facts = [m.value["text"] for m in await bot.memories("u1")]
    assert not any("Lisbon" in text for text in facts), facts
    # The old value lives on in the history, with the time it stopped being true ...
    [replaced] = [h for h in await bot.memory_history("u1") if h["old"] and "Lisbon" in h["old"]]
    assert replaced["action"] == "updated" and "Porto" in replaced["new"]
    assert replaced["valid_until"].startswith((start + timedelta(days=20)).date().isoformat())
    # ... and the episode that said it is kept but marked superseded.
    [old] = [e for e in await bot.episodes("u1") if e.value["text"] == "I live in Lisbon"]
    assert old.value["superseded_by"] and old.value["recall"] == "never"


async def test_forget_erases_episodes_facts_history_and_journaled_learning(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="My name is Bob. I live in Leeds")
    await bot.chat(user_id="u2", thread_id="z", text="My name is Ann")
    await bot.flush_memories()
    await bot.chat(user_id="u1", thread_id="a", text="I'm a nurse")  # pending, not learnt
    assert bot.journal is not None
    # Learning that failed earlier and waits in the journal for a retry.
    await bot.journal.add(Pending("u1", "old", [_said("I play the cello")]))
    assert await bot.memories("u1") and await bot.episodes("u1")

    await bot.forget("u1")

    assert await bot.memories("u1") == [] and await bot.episodes("u1") == []
    assert await bot.memory_history("u1") == []
    assert await bot.journal.size() == 0
    assert await bot.retry_journal(older_than=0) == 0
    await bot.flush_memories()
    assert await bot.store.asearch(memory_namespace("u1"), limit=100) == []
    assert await bot.store.asearch(history_namespace("u1"), limit=100) == []
    reply = await bot.chat(user_id="u1", thread_id="b", text="what is my name?")
    assert DONT_KNOW in reply.text
    assert [m.value["text"] for m in await bot.memories("u2")] == ["My name is Ann."]


async def test_a_redelivered_message_keeps_one_episode(bot) -> None:
    for _ in range(2):
        await bot.chat(user_id="u1", thread_id="a", text="I play the cello", message_id="m1")
    episodes = await bot.episodes("u1")
    assert [e.key for e in episodes] == [episode_key("a", "m1")]


async def test_an_episode_lost_to_a_store_outage_is_written_by_learning(bot) -> None:
    # A batch journaled during an outage names its message: learning writes the episode.
    assert bot.journal is not None
    await bot.journal.add(Pending("u1", "t", [_said("I keep bees on the roof", "m9")]))
    assert await bot.retry_journal(older_than=0) == 1
    [episode] = await bot.store.asearch(memory_namespace("u1"), filter=EPISODES_ONLY)
    assert episode.key == episode_key("t", "m9")
    assert episode.value["text"] == "I keep bees on the roof"


def _said(text: str, message_id: str | None = None):
    from langchain_core.messages import HumanMessage

    at = datetime.now(UTC).isoformat()
    return HumanMessage(text, id=message_id, additional_kwargs={"at": at})


# -- with a language model (the fake one): the plumbing of UPDATE and what the prompt holds --


def _payload(body: dict[str, Any]) -> dict[str, Any]:
    for message in body["messages"]:
        if message["role"] == "user":
            content = message["content"]
            return json.loads(content if isinstance(content, str) else content[0]["text"])
    raise AssertionError("no user message")


def mover(body: dict[str, Any]) -> str | ToolUse:
    """Extraction: ADD where the user lives; UPDATE it when they move."""
    if not body.get("tools"):
        return echo_reply(body)
    payload = _payload(body)
    said = " ".join(m["text"] for m in payload["new_messages"] if m["from"] == "user")
    existing = {m["text"]: m["id"] for m in payload["existing_memories"]}
    if "moved to Porto" in said and "I live in Lisbon." in existing:
        update = {"action": "UPDATE", "id": existing["I live in Lisbon."]}
        return ToolUse(MEMORY_TOOL.name, {"operations": [update | {"text": "I live in Porto."}]})
    if "Lisbon" in said:
        add = {"action": "ADD", "text": "I live in Lisbon."}
        return ToolUse(MEMORY_TOOL.name, {"operations": [add]})
    return ToolUse(MEMORY_TOOL.name, {"operations": []})


async def test_with_a_model_an_update_supersedes_and_the_prompt_drops_the_stale_value(
    tmp_path: Path, local_embeddings
) -> None:
    async with FakeLLM(mover) as fake:
        settings = fake_llm_settings(fake, tmp_path, "anthropic", memory_debounce_seconds=0.0)
        async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
            await bot.chat(user_id="u1", thread_id="a", text="hi, I live in Lisbon")
            await bot.flush_memories()
            await bot.chat(user_id="u1", thread_id="b", text="big news: we moved to Porto")
            await bot.flush_memories()
            fake.requests.clear()
            await bot.chat(user_id="u1", thread_id="c", text="where do I live these days?")
            [chat] = [r for r in fake.requests if not r.body.get("tools")]
            system = json.dumps(chat.body.get("system"))
            assert "I live in Porto." in system and "Lisbon" not in system, system
            # The extraction call saw the user's earlier messages from other threads.
            await bot.flush_memories()
            extractions = [_payload(r.body) for r in fake.requests if r.body.get("tools")]
            assert any(
                "big news: we moved to Porto" in json.dumps(p["earlier_messages_of_the_user"])
                for p in extractions
            )
            [fact] = await bot.memories("u1")
            assert fact.value["text"] == "I live in Porto." and fact.value["valid_from"]


async def test_old_episodes_are_pruned_and_never_merged_into_facts(bot) -> None:
    from engine.memory.consolidate import consolidate, prune_episodes

    long_ago = datetime.now(UTC) - timedelta(days=400)
    await bot.chat(user_id="u1", thread_id="a", text="I play the cello", at=long_ago)
    await bot.chat(user_id="u1", thread_id="b", text="I play the cello")  # said again today
    await bot.flush_memories()
    assert len(await bot.episodes("u1")) == 2
    # The fact and the episodes that say the same words stay apart.
    await consolidate(bot.store, bot.model, threshold=0.8)
    assert [m.value["text"] for m in await bot.memories("u1")] == ["I play the cello."]
    assert len(await bot.episodes("u1")) == 2

    assert await prune_episodes(bot.store, older_than=timedelta(days=365)) == 1
    [kept] = await bot.episodes("u1")
    assert kept.value["source_thread"] == "b"
    assert [m.value["text"] for m in await bot.memories("u1")] == ["I play the cello."]


async def test_a_turn_embeds_its_text_once(tmp_path: Path, local_embeddings) -> None:
    """Recall's query and the episode are the same text: one forward pass of the model."""
    from engine.embeddings.cache import CachedEmbeddings

    model, dims = local_embeddings
    counted = CachedEmbeddings(model)
    settings = offline(tmp_path, memory_debounce_seconds=LEARN_NEVER)
    async with MemoryBot.open(settings, embeddings=(counted, dims)) as bot:
        for n, text in enumerate(["I keep bees on the roof", "what do I keep on the roof?"]):
            before = counted.misses
            await bot.chat(user_id="u1", thread_id=f"t{n}", text=text)
            assert counted.misses - before == 1, text
        assert len(await bot.episodes("u1")) == 2


@pytest.mark.parametrize(
    ("question", "slots"),
    [
        ("what do I do for work?", ("job",)),
        ("what's my line of work", ("job",)),
        ("who do I work for now?", ("employer",)),
        ("which city am I based in?", ("home",)),
        ("where do we live?", ("home",)),
        ("where did I grow up?", ("hometown",)),
        ("what do my friends call me?", ("nickname",)),
        ("what’s my name?", ("name",)),
        ("how old am I", ("age",)),
        ("what's my mum's name?", ("mother",)),
        ("who is my husband?", ("husband",)),
        ("where does my brother live?", ()),  # not about the user
        ("what does my wife do?", ()),  # a relation's slot only says who they are
        ("what's my brother's name?", ()),  # brothers are many: no slot
        ("what did I cook on sunday?", ()),
    ],
)
def test_a_question_about_a_single_valued_subject_names_its_slot(question, slots) -> None:
    assert asked_slots(question) == slots


async def test_a_slot_question_is_answered_from_the_slot_whatever_outranks_it(bot) -> None:
    await bot.chat(
        user_id="u1", thread_id="a", text="long shift again, I'm a physio so my back is wrecked"
    )
    await bot.flush_memories()
    for chatter in ("ooh a work night out with friends is a cute idea", "what should I do tonight"):
        await bot.chat(user_id="u1", thread_id="b", text=chatter)
    [first, *_] = await recall(bot.store, "u1", "what do I do for work?", limit=5)
    assert (first.key, first.text) == ("profile-job", "I'm a physio.")
    reply = await bot.chat(user_id="u1", thread_id="c", text="what do I do for work?")
    assert "physio" in reply.text, reply.text


async def test_a_name_is_no_answer_to_what_someone_does(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="my girlfriend Keisha said yes!! so happy")
    await bot.chat(
        user_id="u1", thread_id="a", text="my wife Hoa's sister is getting married in May"
    )
    await bot.flush_memories()
    for question in ("what does Keisha do for a living?", "what does my wife do for work?"):
        reply = await bot.chat(user_id="u1", thread_id="b", text=question)
        assert DONT_KNOW in reply.text, (question, reply.text)
    who = await bot.chat(user_id="u1", thread_id="c", text="what's my girlfriend's name?")
    assert "Keisha" in who.text, who.text


async def learnt_long_ago(bot: MemoryBot, text: str) -> None:
    """`text` said 40 days ago, and learnt: the slot's fact a newer message may change."""
    await bot.chat(
        user_id="u1", thread_id="a", text=text, at=datetime.now(UTC) - timedelta(days=40)
    )
    await bot.flush_memories()


async def test_a_change_said_after_a_slot_fact_is_answered_before_it(bot) -> None:
    """Learning has not (yet) made a fact of "I started work at Birchwood": the slot says
    Ledgerly, but the newer message that says something changed is stated first."""
    await learnt_long_ago(bot, "I work at Ledgerly")
    await bot.chat(
        user_id="u1",
        thread_id="b",
        text="big news, I started work at Birchwood Health on monday as a senior PM",
    )  # not flushed: only the episode knows
    reply = await bot.chat(user_id="u1", thread_id="c", text="where do I work?")
    assert "Birchwood" in reply.text and "Ledgerly" not in reply.text, reply.text


async def test_an_acknowledgement_is_kept_but_never_recalled(bot) -> None:
    """ "perfect" or "grand" after an answer says nothing about the person; recalled, it
    outranked real messages for short questions ("what's my job?" -> "grand")."""
    await bot.chat(user_id="u1", thread_id="a", text="I drive an ambulance, twelve hour shifts")
    await bot.chat(user_id="u1", thread_id="a", text="grand")
    await bot.chat(user_id="u1", thread_id="a", text="I'm vegan")  # two words, but a fact
    kept = {e.value["text"]: e.value.get("recall") for e in await bot.episodes("u1")}
    assert set(kept) == {"I drive an ambulance, twelve hour shifts", "grand", "I'm vegan"}
    assert kept["grand"] == "never" and kept["I'm vegan"] is None
    recalled = await recall(bot.store, "u1", "grand", limit=5)
    assert "grand" not in [m.text for m in recalled]


@pytest.mark.parametrize(
    ("said", "question", "answer"),
    [
        # A pet named by its breed, not by "dog"/"cat".
        ("took the beagle to the vet, Biscuit hates it there", "what's my dog called?", "Biscuit"),
        (
            "the tabby knocked my coffee over again, Mochi has no shame",
            "what's my cat's name?",
            "Mochi",
        ),
        # A grandchild is no son or daughter.
        ("my grandson Tomas starts school in september", "what's my grandson's name?", "Tomas"),
    ],
)
async def test_a_relation_said_in_other_words_is_recognised(bot, said, question, answer) -> None:
    await bot.chat(user_id="u1", thread_id="a", text=said)
    reply = await bot.chat(user_id="u1", thread_id="b", text=question)
    assert answer in reply.text, reply.text


async def test_an_in_law_is_not_the_sibling(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="my sister Ana is flying in on friday")
    await bot.flush_memories()
    reply = await bot.chat(user_id="u1", thread_id="b", text="what's my sister-in-law's name?")
    assert DONT_KNOW in reply.text and "Ana" not in reply.text, reply.text


async def test_recall_lists_a_change_said_after_a_slot_fact_before_it(bot) -> None:
    """The prompt (and recall@1) shows the newer state first: the message that says the
    job changed, then the slot's fact it supersedes."""
    await learnt_long_ago(bot, "I work at Ledgerly")
    await bot.chat(
        user_id="u1", thread_id="b", text="last day at the old place, I started at Birchwood Health"
    )
    [first, second, *_] = await recall(bot.store, "u1", "where do I work?", limit=5)
    assert "Birchwood" in first.text and second.key == "profile-employer", (first, second)


async def test_a_fact_unrelated_to_the_question_is_not_stated(bot) -> None:
    await bot.chat(user_id="u1", thread_id="a", text="I'm coeliac, so no bread for me")
    await bot.flush_memories()
    reply = await bot.chat(user_id="u1", thread_id="b", text="what instrument am I learning?")
    assert DONT_KNOW in reply.text and "coeliac" not in reply.text, reply.text
