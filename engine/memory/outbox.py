"""A durable journal of memory learning: nothing a user told the bot is lost to a crash
or a store outage.

Before a batch of messages is learnt from, it is written here; once its changes are in
the store, it is removed. If the store is down (learning needs it twice: find similar
memories, write the changes) or the process dies mid-way, the entry stays and is retried
later, by this process or another: a memory told during an outage arrives after
recovery. Re-running a batch is safe: what was already applied is found as an existing
memory and becomes a no-op (the model answers NONE, the rules skip identical text).
Entries younger than a grace period are left to the process working on them.

- `SqliteOutbox`: a file in the data directory (one process, the embedded default).
- `PostgresOutbox`: a table next to the checkpoints, drained by whichever replica gets to
  it (`FOR UPDATE SKIP LOCKED`, so two replicas never apply one entry twice).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosqlite
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from engine.checkpoint import (
    Pool,
    create_table_once,
    is_postgres_url,
    open_pool,
    open_sqlite_file,
)
from engine.models import message_text


@dataclass(frozen=True)
class Pending:
    """One user's messages of one thread, waiting to be learnt from."""

    user_id: str
    thread_id: str
    messages: list[BaseMessage]


Apply = Callable[[Pending], Awaitable[object]]


class Outbox(Protocol):
    async def add(self, pending: Pending) -> int:
        """Journal `pending`; returns its entry id."""
        ...

    async def remove(self, entry_id: int) -> None: ...

    async def size(self) -> int: ...

    async def discard(self, user_id: str) -> int:
        """Drop every entry of `user_id` (`/forget`); returns how many."""
        ...

    async def drain(self, apply: Apply, *, older_than: float) -> int:
        """Apply entries at least `older_than` seconds old, oldest first, deleting each
        once applied; stop at the first failure (the store is still down) and re-raise
        it. Returns how many were applied."""
        ...


def _encode(pending: Pending) -> str:
    said = [_encode_message(m) for m in pending.messages]
    return json.dumps({"user": pending.user_id, "thread": pending.thread_id, "said": said})


def _encode_message(message: BaseMessage) -> dict[str, object]:
    entry: dict[str, object] = {"ai": isinstance(message, AIMessage), "text": message_text(message)}
    # A user message's id names its episode and "at" is when it was said: both survive
    # the journal, so a retried batch dates its facts right and finds its episodes.
    if message.id:
        entry["id"] = message.id
    if isinstance(at := message.additional_kwargs.get("at"), str):
        entry["at"] = at
    return entry


def _decode(raw: str) -> Pending:
    data = json.loads(raw)
    messages: list[BaseMessage] = [
        AIMessage(m["text"])
        if m["ai"]
        else HumanMessage(
            m["text"], id=m.get("id"), additional_kwargs={"at": m["at"]} if "at" in m else {}
        )
        for m in data["said"]
    ]
    return Pending(data["user"], data["thread"], messages)


class SqliteOutbox:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        # Held while an entry is applied and while a user's entries are discarded, so a
        # `/forget` never races a retry of that user's learning (which would re-learn
        # the erased facts after the erasure).
        self._applying = asyncio.Lock()
        self._conn = conn

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[SqliteOutbox]:
        async with open_sqlite_file(
            path,
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY,"
            " entry TEXT NOT NULL, added_at REAL NOT NULL)",
        ) as conn:
            yield cls(conn)

    async def add(self, pending: Pending) -> int:
        cur = await self._conn.execute(
            "INSERT INTO outbox (entry, added_at) VALUES (?, ?)", (_encode(pending), time.time())
        )
        await self._conn.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def remove(self, entry_id: int) -> None:
        await self._conn.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
        await self._conn.commit()

    async def size(self) -> int:
        async with self._conn.execute("SELECT count(*) FROM outbox") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def discard(self, user_id: str) -> int:
        async with self._applying:
            cur = await self._conn.execute(
                "DELETE FROM outbox WHERE json_extract(entry, '$.user') = ?", (user_id,)
            )
            await self._conn.commit()
        return cur.rowcount

    async def drain(self, apply: Apply, *, older_than: float) -> int:
        async with self._conn.execute(
            "SELECT id FROM outbox WHERE added_at <= ? ORDER BY id",
            (time.time() - older_than,),
        ) as cur:
            rows: Sequence[aiosqlite.Row] = list(await cur.fetchall())
        applied = 0
        for (row_id,) in rows:
            async with self._applying:
                async with self._conn.execute(
                    "SELECT entry FROM outbox WHERE id = ?", (row_id,)
                ) as cur:
                    row = await cur.fetchone()
                if row is None:
                    continue  # discarded (forgotten) or applied by its first attempt
                await apply(_decode(row[0]))
                await self._conn.execute("DELETE FROM outbox WHERE id = ?", (row_id,))
                await self._conn.commit()
            applied += 1
        return applied


class PostgresOutbox:
    TABLE = "membot_memory_outbox"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def setup(self) -> None:
        await create_table_once(
            self.pool,
            f"CREATE TABLE IF NOT EXISTS {self.TABLE} ("
            " id bigserial PRIMARY KEY, entry text NOT NULL,"
            " added_at timestamptz NOT NULL DEFAULT now())",
            name=self.TABLE,
        )

    async def add(self, pending: Pending) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO {self.TABLE} (entry) VALUES (%s) RETURNING id", (_encode(pending),)
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def remove(self, entry_id: int) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self.TABLE} WHERE id = %s", (entry_id,))

    async def size(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM {self.TABLE}")
            row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def discard(self, user_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"DELETE FROM {self.TABLE} WHERE (entry::jsonb ->> 'user') = %s", (user_id,)
            )
            return cur.rowcount

    async def drain(self, apply: Apply, *, older_than: float) -> int:
        applied = 0
        while True:
            async with self.pool.connection() as conn, conn.transaction():
                cur = await conn.execute(
                    f"SELECT id, entry FROM {self.TABLE} "
                    "WHERE added_at <= now() - make_interval(secs => %s) "
                    "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
                    (older_than,),
                )
                row = await cur.fetchone()
                if row is None:
                    return applied
                await apply(_decode(row["entry"]))  # raising rolls back: the entry stays
                await conn.execute(f"DELETE FROM {self.TABLE} WHERE id = %s", (row["id"],))
            applied += 1


@asynccontextmanager
async def open_outbox(checkpoint_url: str | None, data_dir: Path) -> AsyncIterator[Outbox]:
    """Next to the checkpoints: in Postgres for replicas, else a file in the data dir."""
    if not is_postgres_url(checkpoint_url):
        async with SqliteOutbox.open(data_dir / "outbox.sqlite") as outbox:
            yield outbox
        return
    async with open_pool(checkpoint_url, max_size=2, name="membot-outbox") as pool:
        outbox = PostgresOutbox(pool)
        await outbox.setup()
        yield outbox
