"""`membot migrate`: an embedded install moved to the server backends.

The source is real: an `EdgeStore` shard with 10,001 memories of 200 users (embedded with the
local sentence model) and 100 conversation threads in a SQLite file, written through
`MemoryBot` and the chat workflow. The targets are `AsyncQdrantStore` on qdrant-client's
in-process `:memory:` mode (no Qdrant server exists on this machine) and a real Postgres
(a schema per test, from the `pg_url` fixture). After the copy, the seed scenario runs on
the migrated data only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.base import PutOp
from langgraph.store.qdrant import AsyncQdrantStore
from qdrant_client import AsyncQdrantClient, models

from bots.cli import main
from engine.bot import CHECKPOINT_FILE, MemoryBot
from engine.checkpoint import open_checkpointer
from engine.memory.records import memory_value
from engine.migrate import (
    MigrationError,
    migrate_checkpoints,
    migrate_memories,
    open_sqlite_readonly,
)
from engine.models import OfflineChat
from engine.settings import Settings
from engine.store import EdgeStore
from engine.store.factory import index_config
from engine.store.server import HybridQdrantStore
from engine.workflow import build_chat_workflow
from tests.store_support import DIMS, hash_embed
from tests.store_support import index_config as hash_index

USERS = 200
PER_USER = 50
THREADS = 100
# Every message of `converse` is kept as an episode (a point under "memories" too): the
# seed, 4 questions through MemoryBot, one message per workflow thread and a question in
# every third one.
EPISODES = 1 + 4 + (THREADS - 5) + len(range(0, THREADS - 5, 3))
COLLECTION = "membot_memories"


class CachedEmbeddings(Embeddings):
    """The local model, each distinct text embedded once. The bulk memories repeat texts
    across users (everyone may like tea), so 10,000 memories need ~450 forward passes
    instead of 10,000 (~4 ms each on this machine, i.e. ~45 s)."""

    def __init__(self, model: Embeddings) -> None:
        self.model = model
        self.cache: dict[str, list[float]] = {}

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        new = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if new:
            self.cache.update(zip(new, self.model.embed_documents(new), strict=True))
        return [self.cache[t] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.model.embed_query(text)


class CountingEmbeddings(Embeddings):
    """The model, counting the documents it is asked to embed."""

    def __init__(self, model: Embeddings) -> None:
        self.model = model
        self.documents = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += len(texts)
        return self.model.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.model.embed_query(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += len(texts)
        return await self.model.aembed_documents(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.model.aembed_query(text)


def fact_pool() -> list[str]:
    """~250 first-person facts; none mentions a name, so only the seed memory answers
    "what is my name?"."""
    things = [
        "tea", "coffee", "jazz", "hiking", "chess", "sushi", "running", "painting",
        "cycling", "opera", "gardening", "knitting", "sailing", "poetry", "baking",
    ]  # fmt: skip
    cities = ["Lisbon", "Oslo", "Kyoto", "Lima", "Quebec", "Nairobi", "Porto", "Hanoi"]
    jobs = ["a bakery", "a hospital", "a school", "a bank", "a shipyard", "a museum"]
    colours = ["green", "blue", "red", "yellow", "purple", "orange"]
    pool = [f"I like {t}" for t in things] + [f"I hate {t}" for t in things]
    pool += [f"I live in {c}" for c in cities] + [f"I work at {j}" for j in jobs]
    pool += [f"My favourite colour is {c}" for c in colours]
    pool += [f"I prefer {a} over {b}" for a in things for b in things if a != b][:200]
    return pool


async def load_bulk(settings: Settings, embedder: Embeddings, dims: int) -> None:
    """10,000 memories through the store's own batched write path (`abatch` of PutOps)."""
    rng = random.Random(7)
    pool = fact_pool()
    ops = [
        PutOp(
            ("memories", str(user)),
            f"bulk-{user}-{n}",
            memory_value(text, "preference", f"console:bulk-{user}"),
        )
        for user in range(1, USERS + 1)
        for n, text in enumerate(rng.sample(pool, PER_USER))
    ]
    cached = CachedEmbeddings(embedder)
    with EdgeStore.open(settings.store_path, index=index_config(cached, dims)) as store:
        for start in range(0, len(ops), 1000):
            await store.abatch(ops[start : start + 1000])
    assert len(cached.cache) < 300


def config(thread: str, user: str) -> dict:
    return {"configurable": {"thread_id": thread, "user_id": user}}


async def converse(settings: Settings, embedder: Embeddings, dims: int) -> None:
    """The seed through MemoryBot, plus 99 more threads: 4 through MemoryBot, 95 through
    the same workflow directly (one or two offline turns each, nothing learnt)."""
    store = EdgeStore.open(settings.store_path, index=index_config(embedder, dims))
    path = str(settings.data_dir / CHECKPOINT_FILE)
    async with store, AsyncSqliteSaver.from_conn_string(path) as saver:
        # A test fixture needs no crash safety; an fsync per checkpoint would double the time.
        await saver.conn.execute("PRAGMA synchronous=OFF")
        bot = MemoryBot(settings=settings, store=store, checkpointer=saver, model=OfflineChat())
        try:
            await bot.chat(user_id="1", thread_id="seed", text="Hi! Remember: my name is Bob")
            for n in range(2, 6):
                await bot.chat(user_id=str(n), thread_id=f"bot-{n}", text="what do I like?")
            await bot.flush_memories()
        finally:
            await bot.writer.aclose()
        workflow = build_chat_workflow(
            model=OfflineChat(), checkpointer=saver, store=store, learn_inline=False
        )
        for n in range(THREADS - 5):
            user = str(n % USERS + 1)
            await workflow.ainvoke({"text": f"Noting {n}: lunch at noon"}, config(f"wf-{n}", user))
            if n % 3 == 0:
                await workflow.ainvoke({"text": "where do I live?"}, config(f"wf-{n}", user))
        assert store.count(("memories",)) == USERS * PER_USER + 1 + EPISODES
        assert store.count(("memory_history",)) == 1  # the seed's "added" record


def files_digest(*paths: Path) -> dict[str, str]:
    return {
        str(f): hashlib.sha256(f.read_bytes()).hexdigest()
        for path in paths
        for f in sorted(path.rglob("*") if path.is_dir() else [path])
        if f.is_file()
    }


def prefix_filter(*labels: str) -> models.Filter:
    encoded = "[" + ",".join(f'"{label}"' for label in labels) + "]"
    condition = models.FieldCondition(key="ns_prefixes", match=models.MatchValue(value=encoded))
    return models.Filter(must=[condition])


async def test_embedded_install_moves_to_servers(tmp_path: Path, local_embeddings, pg_url) -> None:
    embedder, dims = local_embeddings
    settings = Settings(data_dir=tmp_path / "embedded")
    started = time.perf_counter()
    await load_bulk(settings, embedder, dims)
    await converse(settings, embedder, dims)
    # The engine tidies its files (WAL, config) on the first load after writes; every bot
    # start does the same. Settle that first, so the digest below sees only the migration.
    EdgeStore.open(settings.store_path, index=index_config(embedder, dims)).close()
    sqlite_file = settings.data_dir / CHECKPOINT_FILE
    before = files_digest(settings.store_path, sqlite_file)
    sqlite_mtime = sqlite_file.stat().st_mtime_ns
    built = time.perf_counter() - started

    async with open_sqlite_readonly(sqlite_file) as saver:
        seed_history = (await saver.aget_tuple({"configurable": {"thread_id": "seed"}})).checkpoint
        wf_history = (await saver.aget_tuple({"configurable": {"thread_id": "wf-3"}})).checkpoint
    seed_messages = seed_history["channel_values"]["__previous__"]["messages"]
    wf_messages = wf_history["channel_values"]["__previous__"]["messages"]
    assert seed_messages[0].content == "Hi! Remember: my name is Bob"
    assert len(wf_messages) == 4

    # -- memories: points, not items ----------------------------------------------------
    counting = CountingEmbeddings(embedder)
    source = EdgeStore.open(settings.store_path, index=index_config(counting, dims))
    target = HybridQdrantStore(  # what `membot migrate` writes to
        AsyncQdrantClient(":memory:"),
        collection_name=COLLECTION,
        index=index_config(counting, dims),
    )
    try:
        clock = time.perf_counter()
        report = await migrate_memories(source, target)
        copy_seconds = time.perf_counter() - clock
        bob_id = str(
            next(
                r.id
                for r in source.client.scroll(
                    COLLECTION, scroll_filter=prefix_filter("memories", "1"), limit=100
                )[0]
                if r.payload["value"]["text"] == "My name is Bob."
            )
        )
        (source_bob,) = source.client.shard.retrieve([bob_id], True, True)
    finally:
        source.close()
    # + the seed memory and its history record, and the episodes
    total = USERS * PER_USER + 2 + EPISODES
    print(
        f"\nsource built in {built:.1f} s; {total:,} points migrated and verified in "
        f"{copy_seconds:.2f} s ({total / copy_seconds:,.0f} points/s); {report.line()}"
    )
    assert (report.what, report.source_count, report.copied, report.verified) == (
        "memories",
        total,
        total,
        True,
    )
    assert f"memories {10_001 + EPISODES:,}, memory_history 1" in report.notes[0]
    assert counting.documents == 0  # the vectors travel: nothing was embedded again
    client = target.client
    assert (await client.count(COLLECTION, exact=True)).count == total
    in_memories = prefix_filter("memories")
    assert (await client.count(COLLECTION, count_filter=in_memories)).count == 10_001 + EPISODES
    (target_bob,) = await client.retrieve(COLLECTION, [bob_id], with_vectors=True)
    assert target_bob.payload == source_bob.payload
    (copied_vector,) = target_bob.vector["embedding"]  # one embedded field, "text"
    (source_vector,) = source_bob.vector["embedding"]
    assert len(copied_vector) == dims
    assert copied_vector == pytest.approx(source_vector, abs=1e-6)
    # The words' BM25 vector too, made again from the text: recall ranks words on it.
    assert target_bob.vector["bm25"].indices == list(source_bob.vector["bm25"].indices)

    # -- checkpoints ---------------------------------------------------------------------
    async with (
        open_sqlite_readonly(sqlite_file) as saver,
        open_checkpointer(pg_url, tmp_path / "unused.sqlite", keep_latest=False) as postgres,
    ):
        clock = time.perf_counter()
        checkpoints = await migrate_checkpoints(saver, postgres)
        print(f"checkpoints in {time.perf_counter() - clock:.2f} s; {checkpoints.line()}")
        assert (checkpoints.source_count, checkpoints.copied, checkpoints.verified) == (
            THREADS,
            THREADS,
            True,
        )

        # -- nothing in the source changed -------------------------------------------------
        assert files_digest(settings.store_path, sqlite_file) == before
        assert sqlite_file.stat().st_mtime_ns == sqlite_mtime

        # -- the seed scenario on the migrated data alone -----------------------------------
        server = Settings(data_dir=tmp_path / "server")  # only turn locks live here
        bot = MemoryBot(settings=server, store=target, checkpointer=postgres, model=OfflineChat())
        try:
            reply = await bot.chat(user_id="1", thread_id="new", text="what is my name?")
            assert reply.text.startswith("[offline] Your name is Bob ("), reply.text
            other = await bot.chat(user_id="2", thread_id="new-2", text="what is my name?")
            assert "Bob" not in other.text
            assert other.text.startswith("[offline] ")  # user 2 has 50 memories, no name
            assert await bot.history("seed") == seed_messages
            assert await bot.history("wf-3") == wf_messages
            again = await bot.chat(user_id="1", thread_id="seed", text="what is my name?")
            assert "Bob" in again.text
            assert len(await bot.history("seed")) == len(seed_messages) + 2
            await bot.flush_memories()
        finally:
            await bot.writer.aclose()
        assert not (tmp_path / "unused.sqlite").exists()


# -- refusals and reruns, on small stores with the 16-dim test embedder ---------------------


def small_source(path: Path, items: int = 30) -> EdgeStore:
    store = EdgeStore.open(path, index=hash_index())
    for n in range(items):
        store.put(("memories", str(n % 3)), f"k{n}", {"text": f"fact number {n}"})
    store.put(("memory_history", "0"), "h", {"action": "added"}, index=False)
    return store


def hash_target(client: AsyncQdrantClient, dims: int = DIMS) -> AsyncQdrantStore:
    index = {"dims": dims, "embed": hash_embed, "fields": ["text"]}
    return AsyncQdrantStore(client, collection_name=COLLECTION, index=index)


async def test_refuses_a_target_of_another_vector_size(tmp_path: Path) -> None:
    client = AsyncQdrantClient(":memory:")
    with small_source(tmp_path / "q") as source:
        with pytest.raises(MigrationError, match=r"16-dim vectors.*32-dim"):
            await migrate_memories(source, hash_target(client, 32))
        assert not await client.collection_exists(COLLECTION)  # refused before creating it

        await hash_target(client, 32).setup()  # someone made the collection for 32 dims
        with pytest.raises(MigrationError, match=r"cannot take these points.*size 32"):
            await migrate_memories(source, hash_target(client))
        assert (await client.count(COLLECTION)).count == 0


async def test_rerun_is_recognised_and_a_conflicting_target_refused(tmp_path: Path) -> None:
    client = AsyncQdrantClient(":memory:")
    with small_source(tmp_path / "q") as source:
        first = await migrate_memories(source, hash_target(client))
        assert (first.source_count, first.copied, first.verified) == (31, 31, True)
        assert "memories 30, memory_history 1" in first.notes[0]
        hits = await hash_target(client).asearch(("memories", "1"), query="fact number 4")
        assert hits[0].key == "k4" and hits[0].score > 0.99

        again = await migrate_memories(source, hash_target(client))
        assert (again.copied, again.verified) == (0, True)
        assert "already held all 31 points" in again.notes[0]

        # A payload changed on the server since: refuse rather than overwrite.
        (point,) = (await client.scroll(COLLECTION, limit=1))[0]
        await client.set_payload(COLLECTION, {"key": "edited"}, points=[point.id])
        with pytest.raises(MigrationError, match="1 differ"):
            await migrate_memories(source, hash_target(client))
        (kept,) = await client.retrieve(COLLECTION, [point.id])
        assert kept.payload["key"] == "edited"


def lineage(saved: CheckpointTuple) -> tuple[str, str | None]:
    parent = saved.parent_config["configurable"]["checkpoint_id"] if saved.parent_config else None
    return saved.checkpoint["id"], parent


def sorted_writes(saved: CheckpointTuple) -> list:
    return sorted(saved.pending_writes or [], key=lambda write: write[:2])


async def test_checkpoints_replay_and_refuse_a_foreign_thread(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    store = EdgeStore.open(":memory:", index=hash_index())
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        workflow = build_chat_workflow(model=OfflineChat(), checkpointer=saver, store=store)
        for turn in ("hello", "what is my name?", "I like tea"):
            await workflow.ainvoke({"text": turn}, config("t1", "u"))
        await workflow.ainvoke({"text": "hi"}, config("t2", "u"))
    store.close()

    target = InMemorySaver()
    async with open_sqlite_readonly(path) as source:
        report = await migrate_checkpoints(source, target)
        assert (report.source_count, report.copied, report.verified) == (2, 2, True)
        want = [lineage(c) async for c in source.alist(config("t1", "u"))]
        got = [lineage(c) async for c in target.alist(config("t1", "u"))]
        assert got == want and len(want) >= 6  # same ids, same parents
        # Pending writes came along: the input checkpoints carry their tasks' writes. Their
        # order may differ: savers sort them by task path, which `CheckpointTuple` omits.
        src_writes = [sorted_writes(c) async for c in source.alist(config("t1", "u"))]
        dst_writes = [sorted_writes(c) async for c in target.alist(config("t1", "u"))]
        assert dst_writes == src_writes and any(src_writes)

        assert (await migrate_checkpoints(source, target)).verified  # a rerun is harmless

        other = InMemorySaver()
        workflow = build_chat_workflow(model=OfflineChat(), checkpointer=other, store=store)
        await workflow.ainvoke({"text": "a different talk"}, config("t2", "x"))
        with pytest.raises(MigrationError, match=r"already has 1 of these threads.*'t2'"):
            await migrate_checkpoints(source, other)
        assert [c async for c in other.alist(config("t1", "u"))] == []
    with pytest.raises(MigrationError, match="no conversation checkpoints"):
        async with open_sqlite_readonly(tmp_path / "missing.sqlite"):
            pass
    assert not (tmp_path / "missing.sqlite").exists()


# -- the command --------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An environment where `Settings()` describes an embedded install in tmp_path. The
    root logger, which `main` configures, is restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in (
        "MEMBOT_QDRANT_URL",
        "MEMBOT_QDRANT_API_KEY",
        "MEMBOT_QDRANT_COLLECTION",
        "MEMBOT_CHECKPOINT_URL",
        "OPENAI_API_KEY",
        "MEMBOT_OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MEMBOT_EMBEDDING_PROVIDER", "local")
    yield tmp_path / "data"
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_refuses_an_install_already_in_server_mode(cli_env: Path, capsys, monkeypatch) -> None:
    small_source(cli_env / "qdrant").close()
    monkeypatch.setenv("MEMBOT_QDRANT_URL", "https://admin:hunter2@qdrant.example:6333")
    assert main(["migrate", "--to-qdrant", ":memory:"]) == 1
    err = capsys.readouterr().err
    assert "already keeps its memories on a Qdrant server" in err
    assert "hunter2" not in err


def test_cli_refuses_a_store_of_another_vector_size(cli_env: Path, capsys) -> None:
    small_source(cli_env / "qdrant").close()  # 16-dim; the configured local model is 384
    assert main(["migrate", "--to-qdrant", ":memory:"]) == 1
    err = capsys.readouterr().err
    assert "16-dim" in err and "384-dim" in err


def test_cli_refuses_a_store_in_use(cli_env: Path, capsys, local_embeddings) -> None:
    index = index_config(*local_embeddings)
    with EdgeStore.open(cli_env / "qdrant", index=index):  # as if the bot were running
        assert main(["migrate", "--to-qdrant", ":memory:"]) == 1
    assert "open in another process: stop the bot" in capsys.readouterr().err


def test_cli_refuses_a_missing_store(cli_env: Path, capsys) -> None:
    assert main(["migrate", "--to-qdrant", ":memory:"]) == 1
    assert "no embedded memory store" in capsys.readouterr().err
    assert not (cli_env / "qdrant").exists()  # not created by the attempt


async def test_cli_migrates_in_process(cli_env: Path, capsys, local_embeddings, pg_url) -> None:
    """The whole command, in-process: the Qdrant target is `:memory:` (it lives as long
    as the command), Postgres is real and checked afterwards."""
    embedder, dims = local_embeddings
    settings = Settings()
    store = EdgeStore.open(settings.store_path, index=index_config(embedder, dims))
    async with AsyncSqliteSaver.from_conn_string(str(cli_env / CHECKPOINT_FILE)) as saver:
        workflow = build_chat_workflow(model=OfflineChat(), checkpointer=saver, store=store)
        await workflow.ainvoke({"text": "Remember: my name is Bob"}, config("c1", "1"))
        await workflow.ainvoke({"text": "I like tea"}, config("c2", "2"))
        latest = await saver.aget_tuple(config("c1", "1"))
    store.close()
    EdgeStore.open(settings.store_path, index=index_config(embedder, dims)).close()  # settle
    before = files_digest(settings.store_path, cli_env / CHECKPOINT_FILE)

    secret_url = pg_url.replace("postgres@", "postgres:s3cret@", 1)  # trust auth ignores it
    args = ["migrate", "--to-qdrant", ":memory:", "--to-postgres", secret_url]
    assert await asyncio.to_thread(main, args) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    # 2 facts, their 2 history records, and the 2 messages kept as episodes.
    assert lines[0].startswith("memories: 6 points in the source, 6 copied, verified"), out
    assert "(memories 4, memory_history 2;" in lines[0]
    assert lines[1].startswith("checkpoints: 2 threads in the source, 2 copied, verified")
    assert "MEMBOT_QDRANT_URL=:memory:" in out
    assert "MEMBOT_CHECKPOINT_URL=<your --to-postgres URL>" in out
    assert "127.0.0.1:5432/test" in out
    assert "s3cret" not in out + err
    assert files_digest(settings.store_path, cli_env / CHECKPOINT_FILE) == before

    async with open_checkpointer(pg_url, cli_env / "unused.sqlite") as postgres:
        copied = await postgres.aget_tuple(config("c1", "1"))
    assert copied is not None and copied.checkpoint["id"] == latest.checkpoint["id"]
    assert copied.checkpoint["channel_values"] == latest.checkpoint["channel_values"]
