"""The inbox: every accepted platform message, from acceptance until its answer is delivered.

A platform does not retry an event it saw acknowledged (Slack acks before work; Discord
never re-sends a message), so a process killed between the acknowledgement and the
answer would leave a person unanswered forever. The turn pipeline therefore records each
message it takes on here first, keyed by the platform's own id for the message, and
marks it done once the answer is delivered:

- the key is also the claim: a second delivery of the same message (a retry, a
  duplicate, another replica) finds the row and is dropped, so each message is answered
  once, across restarts too;
- an entry still open after its lease (the answer deadline plus a margin) belongs to a
  process that died: a sweep takes it over (atomically, so one replica does) and the
  adapter answers it where it left off (the placeholder it posted, the parts it sent);
- the reply is stored once computed, so a takeover after the answer was made delivers
  that answer instead of asking the model again;
- a done entry keeps only its key (for de-duplication) and is deleted after a day; the
  text of an open entry is the person's message, erased with their memories.

`SqliteInbox` is one file in the data directory (the embedded default: one process owns
the data directory, so at start every open entry of an earlier process is orphaned at
once); `PostgresInbox` is a table next to the checkpoints, shared by every replica, where
an entry is orphaned when its lease has run out.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from engine.checkpoint import (
    Pool,
    create_table_once,
    is_postgres_url,
    open_pool,
    open_sqlite_file,
)

DONE_KEPT_SECONDS = 86_400.0  # a done key de-duplicates redeliveries for a day
PURGE_EVERY = 500  # acceptances between deletions of old done keys


@dataclass(frozen=True)
class Inbound:
    """One platform message the bot has decided to answer."""

    key: str  # the platform's id of the message, e.g. "slack:T1:C1:1712345.000100"
    platform: str  # which adapter answers it after a takeover: "slack", "discord"
    user_id: str
    thread_id: str
    text: str
    message_id: str
    at: datetime  # when it was sent
    # Where the answer goes and how far delivery got: the adapter's own JSON fields
    # (channel, thread, placeholder, parts posted …).
    route: dict[str, Any] = field(default_factory=dict)
    reply: str | None = None  # the answer, once computed


def _encode(inbound: Inbound) -> str:
    return json.dumps(
        {
            "user": inbound.user_id,
            "thread": inbound.thread_id,
            "text": inbound.text,
            "message_id": inbound.message_id,
            "at": inbound.at.isoformat(),
            "route": inbound.route,
        }
    )


def _decode(key: str, platform: str, raw: str, reply: str | None) -> Inbound:
    data = json.loads(raw)
    at = datetime.fromisoformat(data["at"])
    return Inbound(
        key=key,
        platform=platform,
        user_id=data["user"],
        thread_id=data["thread"],
        text=data["text"],
        message_id=data["message_id"],
        at=at if at.tzinfo else at.replace(tzinfo=UTC),
        route=data.get("route") or {},
        reply=reply,
    )


class Inbox(Protocol):
    async def accept(self, inbound: Inbound, *, lease: float) -> bool:
        """Record `inbound` as taken on by this process; False if its key was seen before
        (a duplicate: do not answer it)."""
        ...

    async def progress(self, inbound: Inbound, *, lease: float) -> None:
        """Save the route and reply of `inbound` and extend its lease."""
        ...

    async def done(self, key: str) -> None:
        """The answer is delivered: keep only the key."""
        ...

    async def orphans(self, platform: str, *, lease: float, limit: int = 50) -> list[Inbound]:
        """Take over open entries of `platform` whose process is gone (atomically: each is
        returned to one caller); their lease now runs for this process."""
        ...

    async def discard(self, user_id: str) -> int:
        """Erase the text of `user_id`'s open entries (`/forget`); they are closed."""
        ...

    async def open_count(self) -> int: ...


def _new_owner() -> str:
    return uuid.uuid4().hex


def _new_row(inbound: Inbound, owner: str, *, now: float, lease: float) -> tuple[Any, ...]:
    """The columns an accepted message is inserted with, in both backends' order: key,
    platform, user_id, entry, owner, lease_until, accepted_at."""
    return (
        inbound.key,
        inbound.platform,
        inbound.user_id,
        _encode(inbound),
        owner,
        now + lease,
        now,
    )


class SqliteInbox:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.owner = _new_owner()
        self._accepted = 0

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path) -> AsyncIterator[SqliteInbox]:
        async with open_sqlite_file(
            path,
            "CREATE TABLE IF NOT EXISTS inbox (key TEXT PRIMARY KEY, platform TEXT NOT NULL,"
            " user_id TEXT NOT NULL, entry TEXT NOT NULL, reply TEXT, done INTEGER NOT NULL"
            " DEFAULT 0, owner TEXT NOT NULL, lease_until REAL NOT NULL,"
            " accepted_at REAL NOT NULL)",
            "CREATE INDEX IF NOT EXISTS inbox_open ON inbox (done, platform)",
        ) as conn:
            yield cls(conn)

    async def accept(self, inbound: Inbound, *, lease: float) -> bool:
        now = time.time()
        cur = await self._conn.execute(
            "INSERT INTO inbox (key, platform, user_id, entry, owner, lease_until, accepted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING",
            _new_row(inbound, self.owner, now=now, lease=lease),
        )
        self._accepted += 1
        if self._accepted % PURGE_EVERY == 0:
            await self._conn.execute(
                "DELETE FROM inbox WHERE done = 1 AND accepted_at < ?", (now - DONE_KEPT_SECONDS,)
            )
        await self._conn.commit()
        return cur.rowcount == 1

    async def progress(self, inbound: Inbound, *, lease: float) -> None:
        await self._conn.execute(
            "UPDATE inbox SET entry = ?, reply = ?, lease_until = ? WHERE key = ? AND done = 0",
            (_encode(inbound), inbound.reply, time.time() + lease, inbound.key),
        )
        await self._conn.commit()

    async def done(self, key: str) -> None:
        await self._conn.execute(
            "UPDATE inbox SET done = 1, entry = '{}', reply = NULL WHERE key = ?", (key,)
        )
        await self._conn.commit()

    async def orphans(self, platform: str, *, lease: float, limit: int = 50) -> list[Inbound]:
        # One process owns an embedded data directory: an open entry of another owner
        # (an earlier run) is orphaned now, one of ours when its lease ran out.
        now = time.time()
        rows = await self._conn.execute_fetchall(
            "SELECT key, entry, reply FROM inbox WHERE done = 0 AND platform = ?"
            " AND (owner != ? OR lease_until < ?) ORDER BY accepted_at LIMIT ?",
            (platform, self.owner, now, limit),
        )
        taken = []
        for key, entry, reply in rows:
            cur = await self._conn.execute(
                "UPDATE inbox SET owner = ?, lease_until = ? WHERE key = ? AND done = 0"
                " AND (owner != ? OR lease_until < ?)",
                (self.owner, now + lease, key, self.owner, now),
            )
            if cur.rowcount == 1:
                taken.append(_decode(key, platform, entry, reply))
        await self._conn.commit()
        return taken

    async def discard(self, user_id: str) -> int:
        cur = await self._conn.execute(
            "UPDATE inbox SET done = 1, entry = '{}', reply = NULL WHERE user_id = ? AND done = 0",
            (user_id,),
        )
        await self._conn.commit()
        return cur.rowcount

    async def open_count(self) -> int:
        rows = await self._conn.execute_fetchall("SELECT count(*) FROM inbox WHERE done = 0")
        return int(next(iter(rows))[0])


class PostgresInbox:
    TABLE = "membot_inbox"

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.owner = _new_owner()
        self._accepted = 0

    async def setup(self) -> None:
        await create_table_once(
            self.pool,
            f"CREATE TABLE IF NOT EXISTS {self.TABLE} ("
            " key text PRIMARY KEY, platform text NOT NULL, user_id text NOT NULL,"
            " entry text NOT NULL, reply text, done boolean NOT NULL DEFAULT false,"
            " owner text NOT NULL, lease_until double precision NOT NULL,"
            " accepted_at double precision NOT NULL)",
            name=self.TABLE,
        )

    async def accept(self, inbound: Inbound, *, lease: float) -> bool:
        now = time.time()
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO {self.TABLE} (key, platform, user_id, entry, owner, lease_until,"
                " accepted_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                _new_row(inbound, self.owner, now=now, lease=lease),
            )
            self._accepted += 1
            if self._accepted % PURGE_EVERY == 0:
                await conn.execute(
                    f"DELETE FROM {self.TABLE} WHERE done AND accepted_at < %s",
                    (now - DONE_KEPT_SECONDS,),
                )
            return cur.rowcount == 1

    async def progress(self, inbound: Inbound, *, lease: float) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                f"UPDATE {self.TABLE} SET entry = %s, reply = %s, lease_until = %s"
                " WHERE key = %s AND NOT done",
                (_encode(inbound), inbound.reply, time.time() + lease, inbound.key),
            )

    async def done(self, key: str) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                f"UPDATE {self.TABLE} SET done = true, entry = '{{}}', reply = NULL WHERE key = %s",
                (key,),
            )

    async def orphans(self, platform: str, *, lease: float, limit: int = 50) -> list[Inbound]:
        now = time.time()
        async with self.pool.connection() as conn:
            # One statement takes the rows; SKIP LOCKED keeps two sweeping replicas apart.
            cur = await conn.execute(
                f"UPDATE {self.TABLE} SET owner = %s, lease_until = %s WHERE key IN ("
                f" SELECT key FROM {self.TABLE} WHERE NOT done AND platform = %s"
                " AND lease_until < %s ORDER BY accepted_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " RETURNING key, entry, reply",
                (self.owner, now + lease, platform, now, limit),
            )
            rows = await cur.fetchall()
        return [_decode(r["key"], platform, r["entry"], r["reply"]) for r in rows]

    async def discard(self, user_id: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {self.TABLE} SET done = true, entry = '{{}}', reply = NULL"
                " WHERE user_id = %s AND NOT done",
                (user_id,),
            )
            return cur.rowcount

    async def open_count(self) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM {self.TABLE} WHERE NOT done")
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


def with_progress(inbound: Inbound, *, reply: str | None = None, **route: Any) -> Inbound:
    """`inbound` with `route` fields added (and the reply, if given)."""
    return replace(
        inbound,
        route={**inbound.route, **route},
        reply=inbound.reply if reply is None else reply,
    )


@asynccontextmanager
async def open_inbox(checkpoint_url: str | None, data_dir: Path) -> AsyncIterator[Inbox]:
    """Shared in Postgres when the checkpoints are there (several replicas), else a SQLite
    file in the data directory."""
    if not is_postgres_url(checkpoint_url):
        async with SqliteInbox.open(data_dir / "inbox.sqlite") as inbox:
            yield inbox
        return
    async with open_pool(checkpoint_url, max_size=4, name="membot-inbox") as pool:
        inbox = PostgresInbox(pool)
        await inbox.setup()
        yield inbox


class MemoryInbox:
    """In-process, for a `MemoryBot` built without one (tests, tools): de-duplicates,
    but survives nothing."""

    def __init__(self) -> None:
        self.owner = _new_owner()
        self._open: dict[str, tuple[Inbound, float]] = {}
        self._done: dict[str, float] = {}

    async def accept(self, inbound: Inbound, *, lease: float) -> bool:
        now = time.time()
        self._done = {k: t for k, t in self._done.items() if t > now - DONE_KEPT_SECONDS}
        if inbound.key in self._open or inbound.key in self._done:
            return False
        self._open[inbound.key] = (inbound, now + lease)
        return True

    async def progress(self, inbound: Inbound, *, lease: float) -> None:
        if inbound.key in self._open:
            self._open[inbound.key] = (inbound, time.time() + lease)

    async def done(self, key: str) -> None:
        self._open.pop(key, None)
        self._done[key] = time.time()

    async def orphans(self, platform: str, *, lease: float, limit: int = 50) -> list[Inbound]:
        now = time.time()
        taken = [
            inbound
            for inbound, until in self._open.values()
            if inbound.platform == platform and until < now
        ][:limit]
        for inbound in taken:
            self._open[inbound.key] = (inbound, now + lease)
        return taken

    async def discard(self, user_id: str) -> int:
        keys = [k for k, (inbound, _) in self._open.items() if inbound.user_id == user_id]
        for key in keys:
            await self.done(key)
        return len(keys)

    async def open_count(self) -> int:
        return len(self._open)
