"""Per-user isolation of long-term memory: nobody ever sees, or erases, another's memories.

Users come from every platform and tenant (the same Slack user id in two workspaces,
Discord per server and in DMs, the console) plus hostile ids: dots, slashes, `%`, the
namespace escaping of another id, unicode, 1,000+ characters. Searches use the other
users' exact words, so a namespace filter that ever let an item through would rank it
first.

The embedder is a bag of hashed words (a test double, not a model): fast and
deterministic, and texts that share words really are close. What is tested is the
namespace filter, not semantics.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.embeddings import Embeddings
from langgraph.store.base import Item

from engine.bot import MemoryBot
from engine.memory.namespace import memory_namespace
from engine.memory.records import episode_key, history_namespace
from engine.settings import Settings
from engine.store.erase import adelete_namespace
from engine.text import clean_text

DIMS = 64
_WORD = re.compile(r"\w+")


class WordHashEmbeddings(Embeddings):
    """Each word adds +-1 to one of `DIMS` buckets chosen by its hash; unit length."""

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * DIMS
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=4).digest()
            vector[digest[0] % DIMS] += 1.0 if digest[1] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        if not norm:  # no words at all: a fixed direction, never the zero vector
            return [1.0] + [0.0] * (DIMS - 1)
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


EMBEDDINGS = (WordHashEmbeddings(), DIMS)

LONG = "ü" * 700 + ":" + "x" * 700  # 1,401 characters
USERS = [
    "slack:T1:U1",
    "slack:T2:U1",  # the same Slack user id in another workspace
    "slack:T1:U12",  # U1 is a prefix of it
    "slack:T1",  # a prefix of all the above
    "discord:42:7",
    "discord:43:7",  # same person, another server
    "discord:dm:7",
    "discord:7",  # global memory scope
    "discord:42:77",
    "console:x",
    "a.b",
    "a%2Eb",  # the namespace label of "a.b"
    "a%252Eb",  # the namespace label of "a%2Eb"
    "a..b",
    ".",
    "%",
    "a/b",
    "../../etc/passwd",
    "memories",
    'q"],["memories","x',  # tries to break out of the JSON-encoded namespace path
    "\\",
    "日本語:ユーザー/é%",
    "\u200bzero\u202ewidth",
    "🙂" * 3,
    LONG,
    LONG + ".",
]
CONFUSABLE = [  # ids one careless mapping (prefix match, escaping, truncation) would merge
    ["slack:T1:U1", "slack:T2:U1", "slack:T1:U12", "slack:T1"],
    ["a.b", "a%2Eb", "a%252Eb", "a..b", "."],
    ["discord:42:7", "discord:43:7", "discord:dm:7", "discord:7", "discord:42:77"],
    [LONG, LONG + ".", LONG[:1000]],
    ["a/b", "../../etc/passwd", "memories", 'q"],["memories","x', "\\"],
    ["console:x", "日本語:ユーザー/é%", "\u200bzero\u202ewidth", "🙂" * 3, "%"],
]
VOCABULARY = [
    "tea",
    "coffee",
    "Bob",
    "Lisbon",
    "payments",
    "secret",
    "password",
    "hunter2",
    "日本",
    "café",
    "%2E",
    "a.b",
    "../",
    "slack:T1:U1",
    "ünïcödé",
]


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, llm_provider="offline")


def ns(item: Item) -> tuple[str, ...]:
    return tuple(item.namespace)


def snapshot(items: Sequence[Item]) -> dict[str, tuple[str, str, str]]:
    """Everything about each item that must survive someone else's erasure, byte for byte."""
    return {
        item.key: (
            json.dumps(item.value, ensure_ascii=False),
            item.created_at.isoformat(),
            item.updated_at.isoformat(),
        )
        for item in items
    }


async def everything_of(bot: MemoryBot, user: str) -> tuple[dict, dict]:
    memories = await bot.store.asearch(memory_namespace(user), limit=1000)
    history = await bot.store.asearch(history_namespace(user), limit=1000)
    return snapshot(memories), snapshot(history)


@pytest.fixture
async def shared_bot(tmp_path: Path) -> AsyncIterator[MemoryBot]:
    async with MemoryBot.open(settings_for(tmp_path), embeddings=EMBEDDINGS) as bot:
        yield bot


# -- the property ------------------------------------------------------------------------

identifiers = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
)
words = st.lists(st.sampled_from(VOCABULARY) | st.text(min_size=1, max_size=8), max_size=5)
fact = st.tuples(
    st.sampled_from(["I like", "my name is", "remember:", "my favourite drink is", "I live in"]),
    words,
).map(lambda pair: " ".join([pair[0], *pair[1]]).strip())
user_index = st.integers(min_value=0, max_value=10_000)  # modulo the example's user count
step = st.one_of(
    st.tuples(st.just("remember"), user_index, fact),
    st.tuples(st.just("put"), user_index, st.sampled_from(["k1", "k2", "k.3", "%"]), fact),
    st.tuples(st.just("search_own"), user_index, words.map(" ".join)),
    st.tuples(st.just("search_other"), user_index, st.integers(min_value=0)),  # their exact words
    st.tuples(st.just("memories"), user_index),
    st.tuples(st.just("chat"), user_index, fact),  # an episode, and whatever rules learn
    st.tuples(st.just("ask"), user_index, st.integers(min_value=0)),  # their exact words
    st.tuples(st.just("forget"), user_index),
)


class Model:
    """What each user wrote: key -> text, exactly as the store should hold it."""

    def __init__(self, users: list[str]) -> None:
        self.users = users
        self.memories: dict[str, dict[str, str]] = {u: {} for u in users}  # facts
        self.episodes: dict[str, dict[str, str]] = {u: {} for u in users}
        self.written: list[tuple[str, str]] = []  # (who, text), for "their exact words"

    def everything(self, user: str) -> dict[str, str]:
        return self.memories[user] | self.episodes[user]

    def resync(self, user: str, listed: Sequence[Item]) -> None:
        """After a turn: the user's namespace as it now is (what the rules learnt cannot
        be predicted here; that it stays in this namespace is what is checked)."""
        kept = {i.key: i for i in listed}
        self.episodes[user] = {
            k: i.value["text"] for k, i in kept.items() if i.value.get("memory_type") == "episode"
        }
        self.memories[user] = {
            k: i.value["text"] for k, i in kept.items() if i.value.get("memory_type") != "episode"
        }

    def user(self, index: int) -> str:
        return self.users[index % len(self.users)]

    def check_own(self, user: str, items: Sequence[Item], *, complete: bool) -> None:
        mine = self.memories[user]
        for item in items:
            assert ns(item) == memory_namespace(user), (user, item)
            assert mine.get(item.key) == item.value.get("text"), (user, item)
        if complete:
            assert len(items) == len(mine), (user, [i.key for i in items], mine)


async def run_script(bot: MemoryBot, users: list[str], script: list[tuple[Any, ...]]) -> None:
    model = Model(users)
    store = bot.store
    for step, (action, index, *args) in enumerate(script):
        user = model.user(index)
        namespace = memory_namespace(user)
        if action == "remember":
            stored = await bot.remember(user, args[0])
            for item in stored:
                assert ns(item) == namespace
                model.memories[user][item.key] = item.value["text"]
                model.written.append((user, item.value["text"]))
        elif action == "put":
            key, text = args
            await store.aput(namespace, key, {"text": text})
            model.memories[user][key] = text
            model.written.append((user, text))
        elif action in ("search_own", "search_other"):
            query = args[0]
            if action == "search_other":
                theirs = [text for who, text in model.written if who != user]
                if not theirs:
                    continue
                query = theirs[args[0] % len(theirs)]
            found = await store.asearch(namespace, query=query, limit=10)
            for item in found:
                assert ns(item) == namespace, (user, item)
                assert model.everything(user).get(item.key) == item.value.get("text")
            # Every one of the user's items has a vector: the page is full.
            assert len(found) == min(10, len(model.everything(user)))
        elif action == "chat":
            thread = f"iso-{step}"
            reply = await bot.chat(
                user_id=user, thread_id=thread, text=args[0], message_id=str(step)
            )
            await bot.flush_memories()
            listed = await store.asearch(namespace, limit=1000)
            assert all(ns(item) == namespace for item in listed)
            said = clean_text(args[0]).strip()
            if said and not reply.refused:
                key = episode_key(thread, str(step))
                kept = [i.value["text"] for i in listed if i.key == key]
                assert kept == [said], (user, said, reply, [i.value for i in listed])
                model.written.append((user, said))
            model.resync(user, listed)
        elif action == "ask":
            # Another user's exact words as a question: the reply never states them.
            theirs = [text for who, text in model.written if who != user]
            mine = {text for who, text in model.written if who == user}
            if not theirs:
                continue
            words = theirs[args[0] % len(theirs)]
            reply = await bot.chat(user_id=user, thread_id=f"ask-{step}", text=f"{words}?")
            await bot.flush_memories()
            for text in set(theirs) - mine:
                if len(text) > 3 and not any(text in own for own in mine):
                    assert f"“{text}”" not in reply.text, (user, text, reply.text)
            # A question is kept as an episode, and a statement inside it may be learnt.
            listed = await store.asearch(namespace, limit=1000)
            assert all(ns(item) == namespace for item in listed)
            model.resync(user, listed)
        elif action == "memories":
            model.check_own(user, await bot.memories(user), complete=True)
        elif action == "forget":
            others = [u for u in users if u != user]
            before = {u: await everything_of(bot, u) for u in others}
            erased = await bot.forget(user)
            assert erased == len(model.memories[user])  # facts: what a person is shown
            model.memories[user] = {}
            model.episodes[user] = {}
            assert await everything_of(bot, user) == ({}, {})
            assert {u: await everything_of(bot, u) for u in others} == before
    # At the end, every user holds exactly what they wrote, and nothing else exists.
    for user in users:
        model.check_own(user, await bot.memories(user), complete=True)
        listed = await store.asearch(memory_namespace(user), limit=1000)
        assert {i.key: i.value["text"] for i in listed} == model.everything(user)
    total = sum(len(model.everything(u)) for u in users)
    assert len(await store.asearch(("memories",), limit=10_000)) == total


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(
    confusable=st.sampled_from(CONFUSABLE),
    others=st.lists(st.sampled_from(USERS) | identifiers, max_size=5),
    script=st.lists(step, min_size=1, max_size=40),
)
async def test_no_one_ever_sees_another_users_memories(
    shared_bot: MemoryBot, confusable: list[str], others: list[str], script: list[tuple[Any, ...]]
) -> None:
    """A few users per example (so they write, search and forget a lot), always including
    a group of ids that are easy to confuse, then any others, hostile ones included. One
    bot serves all examples (opening one costs more than an example); each starts empty."""
    for root in ("memories", "memory_history"):
        await adelete_namespace(shared_bot.store, (root,))
    assert shared_bot.store.count(()) == 0
    users = list(dict.fromkeys([*confusable, *others]))
    await run_script(shared_bot, users, script)


async def test_exact_words_of_another_user_find_nothing(tmp_path: Path) -> None:
    """The plain case, spelled out: identical texts in every namespace, each user finds
    exactly their own copy, and a user with nothing finds nothing."""
    async with MemoryBot.open(settings_for(tmp_path), embeddings=EMBEDDINGS) as bot:
        names = {}
        for user in USERS:
            await bot.store.aput(memory_namespace(user), "same", {"text": "my password is hunter2"})
            (names[user],) = await bot.remember(user, f"my name is {user}")
        for user in USERS:
            hits = await bot.store.asearch(memory_namespace(user), query="my password is hunter2")
            assert [ns(h) for h in hits] == [memory_namespace(user)] * 2
            # An exact match leads (hybrid score: cosine 1.0 plus BM25, times recency).
            assert hits[0].key == "same" and hits[0].score >= 0.99
            texts = sorted(m.value["text"] for m in await bot.memories(user))
            assert texts == sorted(["my password is hunter2", names[user].value["text"]])
            by_name = await bot.store.asearch(
                memory_namespace(user), query=names[user].value["text"]
            )
            assert by_name[0].key == names[user].key
            assert {ns(h) for h in by_name} == {memory_namespace(user)}
        nobody = "slack:T1:U1 "  # one trailing space away from a real user
        assert (
            await bot.store.asearch(memory_namespace(nobody), query="my password is hunter2") == []
        )
        assert await bot.memories(nobody) == []


# -- /forget -----------------------------------------------------------------------------

FORGET_USERS = [
    "slack:T1:U1",
    "slack:T1:U12",  # the id above is a prefix of this one
    "slack:T1:U",
    "slack:T2:U1",
    "a.b",
    "a%2Eb",  # "a.b"'s namespace label, as a user id of its own
    "a%252Eb",
    "a",
    "discord:42:7",
    "discord:dm:7",
    "console:x",
    LONG,
    LONG + "y",
]


@pytest.mark.parametrize(
    "victim", ["slack:T1:U1", "slack:T1:U", "a.b", "a%2Eb", "a", LONG], ids=lambda u: u[:16]
)
async def test_forget_leaves_everyone_else_byte_identical(tmp_path: Path, victim: str) -> None:
    async with MemoryBot.open(settings_for(tmp_path), embeddings=EMBEDDINGS) as bot:
        for n, user in enumerate(FORGET_USERS):
            await bot.remember(user, f"my name is Person{n}")
            await bot.remember(user, "I like tea")  # the same fact for everyone
            await bot.remember(user, f"remember: my locker is {n}")
            await bot.store.aput(memory_namespace(user), "raw", {"text": "I like tea", "n": n})
        others = [u for u in FORGET_USERS if u != victim]
        before = {u: await everything_of(bot, u) for u in others}
        assert all(
            len(memories) == 4 and len(history) == 3 for memories, history in before.values()
        )
        total = bot.store.count(("memories",))

        assert await bot.forget(victim) == 4

        assert await bot.memories(victim) == []
        assert await bot.memory_history(victim) == []
        assert {u: await everything_of(bot, u) for u in others} == before
        assert bot.store.count(("memories",)) == total - 4
        # And a second erasure finds nothing and still touches no one else.
        assert await bot.forget(victim) == 0
        assert {u: await everything_of(bot, u) for u in others} == before


# -- linked accounts -----------------------------------------------------------------------

LINKABLE = [
    "slack:T1:U1",
    "slack:T2:U1",  # the same Slack user id in another workspace: a separate account
    "slack:T1:U12",  # same workspace as slack:T1:U1: never linkable with it
    "discord:42:7",
    "discord:7",  # its tenancy, `discord`, is a prefix of `discord:42`'s
    "console:x",
]
BYSTANDERS = ["slack:T1:U2", "discord:43:7", "console:y"]  # never link; must see nothing
LINK_ROOTS = ("memories", "memory_history", "identities", "people", "link_codes", "link_state")
account_index = st.integers(min_value=0, max_value=len(LINKABLE) + len(BYSTANDERS) - 1)
link_step = st.one_of(
    st.tuples(st.just("say"), account_index),
    st.tuples(
        st.just("link"), st.integers(0, len(LINKABLE) - 1), st.integers(0, len(LINKABLE) - 1)
    ),
    st.tuples(st.just("unlink"), st.integers(0, len(LINKABLE) - 1)),
    st.tuples(st.just("forget"), account_index),
)


def tenancy(account: str) -> str:
    return account.rpartition(":")[0]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(script=st.lists(link_step, min_size=1, max_size=25))
async def test_linked_accounts_share_memories_and_nothing_reaches_anyone_else(
    shared_bot: MemoryBot, script: list[tuple[Any, ...]]
) -> None:
    """Accounts say things, link (by code), unlink and forget in any order. After every
    step each account sees exactly what was said on the accounts linked with it now:
    nothing from an unlinked account, a bystander or another tenant, and nothing erased."""
    bot = shared_bot
    for root in LINK_ROOTS:
        await adelete_namespace(bot.store, (root,))
    accounts = LINKABLE + BYSTANDERS
    group = {a: frozenset([a]) for a in accounts}
    said: dict[str, str] = {}  # token -> the account it was said on
    for step, (action, *args) in enumerate(script):
        if action == "say":
            account, token = accounts[args[0]], f"zq{step}x"
            thread = f"{tenancy(account)}:t{step}"
            await bot.chat(user_id=account, thread_id=thread, text=f"my code word is {token}")
            said[token] = account
        elif action == "link":
            issuer, typer = LINKABLE[args[0]], LINKABLE[args[1]]
            result = await bot.link(typer, (await bot.link_code(issuer)).code)
            joined = group[issuer] | group[typer]
            tenancies = [tenancy(a) for a in joined]
            expected = issuer != typer and len(set(tenancies)) == len(tenancies)
            already = issuer != typer and group[issuer] == group[typer]
            assert result.ok == (expected or already), result.message
            if expected:
                for account in joined:
                    group[account] = joined
        elif action == "unlink":
            account = LINKABLE[args[0]]
            result = await bot.unlink(account)
            assert result.ok == (len(group[account]) > 1), result.message
            rest = group[account] - {account}
            for other in rest:
                group[other] = rest
            group[account] = frozenset([account])
        elif action == "forget":
            account = accounts[args[0]]
            await bot.forget(account)
            said = {t: who for t, who in said.items() if who not in group[account]}
        await bot.flush_memories()
        for account in accounts:
            expected_tokens = {t for t, who in said.items() if who in group[account]}
            items = [*await bot.episodes(account, limit=1000), *await bot.memories(account)]
            seen = {t for item in items for t in re.findall(r"zq\d+x", item.value["text"])}
            assert seen == expected_tokens, (account, step, action, args)
            assert sorted(await bot.linked_accounts(account)) == sorted(group[account])
