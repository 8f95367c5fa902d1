"""Checkpoint size: what one long conversation leaves on disk, every checkpoint vs the latest.

LangGraph keeps a checkpoint per turn, though the bot reads only a thread's latest; the
savers now delete the older ones (`keep_latest`, engine/checkpoint.py). This bench runs
the same conversation twice through `MemoryBot` on the embedded default (offline model,
local embedder, Qdrant Edge store, SQLite checkpoints), once with `keep_latest=False`
(LangGraph's behaviour, the "before") and once with the default (the "after"): one thread,
`--turns` messages (the casual chat of bench/data/memory_quality.json, cycled). After each
turn the bench runs the bot's after-turn work (learning, then compaction of a thread over
its token budget) as a pause of `memory_debounce_seconds` would: a user who waits for the
reply. Per run: the checkpoint file's bytes after the bot closed (its WAL folded in), the
thread's rows (`checkpoints`, `writes`), the stored checkpoint bytes, and the mean time of
`chat()`. Each run's thread must end with the user's latest messages, in order (the
conversation carries on), or the bench fails.

The bot is built as `MemoryBot.open` builds it (same store, model and settings), only the
checkpointer is opened here, so the flag can differ.

Run: `.venv/bin/python bench/checkpoint_bench.py [--turns 1000] [--json out.json]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from contextlib import closing
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.report import header, table, target, write_json
from engine.bot import CHECKPOINT_FILE, MemoryBot
from engine.checkpoint import open_checkpointer
from engine.embeddings import make_embeddings
from engine.models import make_chat_model, message_text
from engine.settings import Settings
from engine.store.factory import open_store

DATA = Path(__file__).parent / "data" / "memory_quality.json"
THREAD = "bench:long"
USER = "bench:user"


def messages(turns: int) -> list[str]:
    """`turns` real chat messages (the quality set's sessions, in order, cycled)."""
    data = json.loads(DATA.read_text())
    said = [m for p in data["personas"] for s in p["sessions"] for m in s["messages"]]
    return list(islice(cycle(said), turns))


async def converse(data_dir: Path, texts: list[str], *, keep_latest: bool) -> dict[str, Any]:
    """One thread of `texts` through MemoryBot; the checkpoint file's figures after."""
    settings = Settings(data_dir=data_dir, llm_provider="offline", embedding_provider="local")
    embedder, dims = make_embeddings(settings)
    if warm := getattr(embedder, "warm", None):
        warm()
    path = data_dir / CHECKPOINT_FILE
    async with (
        open_store(settings, embedder, dims) as store,
        open_checkpointer(None, path, keep_latest=keep_latest) as checkpointer,
    ):
        bot = MemoryBot(
            settings=settings,
            store=store,
            checkpointer=checkpointer,
            model=make_chat_model(settings),
        )
        try:
            chatting = 0.0
            for text in texts:
                began = time.perf_counter()
                await bot.chat(user_id=USER, thread_id=THREAD, text=text)
                chatting += time.perf_counter() - began
                await bot.flush_memories()  # the pause after a reply: learn, compact
            turn_ms = chatting / len(texts) * 1000
            history = await bot.history(THREAD)
            said = [message_text(m) for m in history if isinstance(m, HumanMessage)]
        finally:
            await bot.writer.aclose()
    # Closed: SQLite has folded the WAL into the file (counted too, should one remain).
    files = [path, path.with_name(path.name + "-wal")]
    on_disk = sum(f.stat().st_size for f in files if f.exists())
    with closing(sqlite3.connect(path)) as conn:
        rows, stored = conn.execute(
            "SELECT count(*), coalesce(sum(length(checkpoint) + length(metadata)), 0) "
            "FROM checkpoints WHERE thread_id = ?",
            (THREAD,),
        ).fetchone()
        (writes,) = conn.execute(
            "SELECT count(*) FROM writes WHERE thread_id = ?", (THREAD,)
        ).fetchone()
    return {
        "keep_latest": keep_latest,
        "turns": len(texts),
        "file_bytes": on_disk,
        "checkpoint_rows": rows,
        "write_rows": writes,
        "checkpoint_bytes": stored,
        "turn_ms": turn_ms,
        "messages": len(history),
        # The thread's user messages are the latest ones said, in order.
        "carries_on": bool(said) and said == texts[-len(said) :],
    }


def report(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, bool]:
    runs = (("every checkpoint (before)", before), ("latest only (after)", after))
    rows = [
        [
            name,
            run["turns"],
            run["checkpoint_rows"],
            run["write_rows"],
            f"{run['checkpoint_bytes']:,}",
            f"{run['file_bytes']:,}",
            run["messages"],
            run["turn_ms"],
        ]
        for name, run in runs
    ]
    columns = [
        "checkpoints kept",
        "turns",
        "checkpoint rows",
        "write rows",
        "checkpoint bytes",
        "SQLite file bytes",
        "messages in thread",
        "chat() mean (ms)",
    ]
    shrink = before["file_bytes"] / after["file_bytes"] if after["file_bytes"] else None
    bounded = target(
        "checkpoint rows per thread (after)",
        after["checkpoint_rows"],
        1,
        at_least=False,
        fmt="{:.0f}",
    )
    carries_on = float(before["carries_on"] and after["carries_on"])
    whole = target("thread ends with the latest messages, both runs", carries_on, 1, fmt="{:.0f}")
    smaller = target("SQLite file, before / after", shrink, 10, fmt="{:.0f}x")
    lines = [table(columns, rows), "", bounded[0], whole[0], smaller[0]]
    # Only correctness fails the run; the ratio depends on --turns.
    return "\n".join(lines), bounded[1] and whole[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=1000, help="messages in the thread")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    texts = messages(args.turns)
    runs = {}
    for keep_latest in (False, True):
        with tempfile.TemporaryDirectory(prefix="membot-checkpoints-") as tmp:
            runs[keep_latest] = asyncio.run(converse(Path(tmp), texts, keep_latest=keep_latest))
    text, met = report(runs[False], runs[True])
    print(header("Checkpoint size (SQLite default, one thread, through MemoryBot)"))
    print(text)
    write_json(args.json, {"before": runs[False], "after": runs[True]})
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
