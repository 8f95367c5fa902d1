"""`membot reindex`: a store built offline with the local model is re-embedded with OpenAI
embeddings (the fake's `/v1/embeddings`), keeps every item, and the bot starts on it with
`MEMBOT_EMBEDDING_PROVIDER=openai`; a failing embedder leaves the old store as it was.

The engine function runs in-process (the fake and the local model are shared); the
usage errors run the `membot` command as a subprocess, as an operator sees them.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import qdrant_edge as qe
from langgraph.store.qdrant.base import VECTOR_NAME
from pydantic import SecretStr

from engine.bot import MemoryBot
from engine.embeddings import make_embeddings
from engine.embeddings.local import LocalEmbeddings
from engine.embeddings.record import RECORD_FILE
from engine.errors import ConfigError
from engine.migrate import STORE_META
from engine.reindex import NEW_DIR, reindex, run_command
from engine.settings import Settings
from engine.store import EdgeStore
from engine.store.factory import index_config
from tests.fakes.llm import FakeLLM

ROOT = Path(__file__).resolve().parents[1]
USER = "u1"
DIMS = 256  # OpenAI size asked of the fake: smaller than 1536, as real as any
FACTS = ["my name is Ann", "I live in Braga", "I work as an electrician"]


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def openai_settings(fake: FakeLLM, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        llm_provider="offline",
        embedding_provider="openai",
        openai_api_key=SecretStr("test-key"),
        openai_base_url=fake.openai_url,
        openai_embedding_dims=DIMS,
    )


async def local_store(data_dir: Path, local_embeddings: tuple[LocalEmbeddings, int]) -> list[str]:
    """A store built offline by the bot (facts, episodes, history); its facts' texts."""
    settings = Settings(data_dir=data_dir, llm_provider="offline", embedding_provider="local")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        for n, fact in enumerate(FACTS):
            await bot.chat(user_id=USER, thread_id=f"t{n}", text=fact)
        await bot.flush_memories()
        facts = sorted(item.value["text"] for item in await bot.memories(USER))
    assert facts, "the offline bot kept no facts"
    return facts


def dump(path: Path) -> dict[tuple[tuple[str, ...], str], dict[str, Any]]:
    """Every item of the store at `path`: value and timestamps, and its vectors' sizes."""
    items = {}
    with EdgeStore.open(path) as store:
        shard = store.client.shard
        offset = None
        while True:
            page = qe.ScrollRequest(offset=offset, limit=256, with_payload=True, with_vector=True)
            records, offset = shard.scroll(page)
            for record in records:
                payload = record.payload or {}
                vectors = (record.vector or {}).get(VECTOR_NAME) or []
                items[(tuple(payload["namespace"]), payload["key"])] = {
                    "value": json.loads(payload["value_json"]),
                    "created_at": payload["created_at"],
                    "updated_at": payload["updated_at"],
                    "sizes": [len(v) for v in vectors],
                }
            if offset is None:
                return items


def backups(data_dir: Path, provider: str = "*") -> list[Path]:
    return list(data_dir.glob(f"qdrant.{provider}-*.bak"))


def without_sizes(items: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {k: {f: v for f, v in item.items() if f != "sizes"} for k, item in items.items()}


async def test_reindex_to_openai_keeps_every_item(
    tmp_path: Path, fake: FakeLLM, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    facts = await local_store(tmp_path, local_embeddings)
    before = dump(tmp_path / "qdrant")
    assert {ns[0] for ns, _ in before} == {"memories", "memory_history"}
    assert {len(item["sizes"]) for item in before.values()} >= {0, 1}  # history: no vectors

    out, err = io.StringIO(), io.StringIO()
    assert await run_command(openai_settings(fake, tmp_path), out=out, err=err) == 0, err.getvalue()
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"reindexed {len(before)} items (") and "openai" in line, line

    after = dump(tmp_path / "qdrant")
    assert without_sizes(after) == without_sizes(before)  # keys, values, timestamps
    for key, item in before.items():
        assert after[key]["sizes"] == [DIMS] * len(item["sizes"]), key
    record = json.loads((tmp_path / "qdrant" / RECORD_FILE).read_text())
    assert record == {"provider": "openai", "model": "text-embedding-3-small", "dims": DIMS}
    [backup] = backups(tmp_path, "local")
    assert dump(backup) == before
    assert json.loads((backup / RECORD_FILE).read_text())["provider"] == "local"
    assert not (tmp_path / NEW_DIR).exists()

    async with MemoryBot.open(openai_settings(fake, tmp_path)) as bot:
        assert sorted(item.value["text"] for item in await bot.memories(USER)) == facts
        reply = await bot.chat(user_id=USER, thread_id="new", text="what is my name?")
    assert "Ann" in reply.text, reply.text


async def test_a_failing_embedder_leaves_the_old_store(
    tmp_path: Path, fake: FakeLLM, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    facts = await local_store(tmp_path, local_embeddings)
    before = dump(tmp_path / "qdrant")
    fake.fail(500, times=50)  # more than the SDK's retries of every request

    err = io.StringIO()
    assert await run_command(openai_settings(fake, tmp_path), out=io.StringIO(), err=err) == 1
    [line] = err.getvalue().splitlines()
    assert line.startswith("membot reindex: ") and "untouched" in line, line

    assert not (tmp_path / NEW_DIR).exists()
    assert not backups(tmp_path)
    assert dump(tmp_path / "qdrant") == before
    assert json.loads((tmp_path / "qdrant" / RECORD_FILE).read_text())["provider"] == "local"
    settings = Settings(data_dir=tmp_path, llm_provider="offline", embedding_provider="local")
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        assert sorted(item.value["text"] for item in await bot.memories(USER)) == facts


async def test_same_embedder_is_a_config_error(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    EdgeStore.open(tmp_path / "qdrant", index=index_config(*local_embeddings)).close()
    with pytest.raises(ConfigError) as raised:
        await reindex(Settings(data_dir=tmp_path, embedding_provider="local"))
    assert raised.value.variable == "MEMBOT_EMBEDDING_PROVIDER"
    assert "already built" in str(raised.value)


async def test_a_store_made_before_bm25_vectors_is_rebuilt_with_the_same_embedder(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    facts = await local_store(tmp_path, local_embeddings)
    meta = tmp_path / "qdrant" / STORE_META
    old_layout = {k: v for k, v in json.loads(meta.read_text()).items() if k != "lexical"}
    meta.write_text(json.dumps(old_layout))  # as a store made before BM25 vectors says
    with EdgeStore.open(tmp_path / "qdrant", index=index_config(*local_embeddings)) as old:
        assert old.lexical == "text"
    before = dump(tmp_path / "qdrant")

    settings = Settings(data_dir=tmp_path, llm_provider="offline", embedding_provider="local")
    out, err = io.StringIO(), io.StringIO()
    assert await run_command(settings, out=out, err=err) == 0, err.getvalue()

    assert dump(tmp_path / "qdrant") == before
    assert json.loads(meta.read_text())["lexical"] == "bm25"
    async with MemoryBot.open(settings, embeddings=local_embeddings) as bot:
        assert bot.store.lexical == "sparse"
        assert sorted(item.value["text"] for item in await bot.memories(USER)) == facts
        found = await bot.store.asearch(("memories", USER), query="Braga")
    assert "Braga" in found[0].value["text"]


def test_the_contradiction_error_offers_reindex(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int]
) -> None:
    EdgeStore.open(tmp_path / "qdrant", index=index_config(*local_embeddings)).close()
    explicit = Settings(
        data_dir=tmp_path, embedding_provider="openai", openai_api_key=SecretStr("sk-test")
    )
    with pytest.raises(ConfigError) as raised:
        make_embeddings(explicit)
    assert "membot reindex" in str(raised.value)


@pytest.mark.parametrize("provider", ["auto", "local"])
def test_usage_errors_from_the_command(
    tmp_path: Path, local_embeddings: tuple[LocalEmbeddings, int], provider: str
) -> None:
    data = tmp_path / "data"
    EdgeStore.open(data / "qdrant", index=index_config(*local_embeddings)).close()
    result = subprocess.run(
        [sys.executable, "-m", "bots.cli", "reindex"],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "PYTHONPATH": str(ROOT),
            "MEMBOT_DATA_DIR": str(data),
            "MEMBOT_EMBEDDING_PROVIDER": provider,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert "MEMBOT_EMBEDDING_PROVIDER" in line and "Traceback" not in result.stderr
    assert not (data / NEW_DIR).exists() and not list(data.glob("qdrant.*.bak"))
