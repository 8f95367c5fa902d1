"""Who is who: platform accounts joined into one person by a one-time code.

An identity is what an adapter passes as `user_id`: `<tenancy>:<member>`, where the
tenancy is the platform and, where there is one, the workspace or server
(`slack:T1:U2` is member U2 of Slack workspace T1; `discord:G:U`, `discord:U` with the
global scope, `console:alice`). A thread id starts with its tenancy the same way
(`slack:T1:C1:…`), so a memory's source thread tells which account it was said on.

Unlinked, an identity owns its memories itself (namespace `("memories", identity)`):
nothing changes for anyone who never links. Linked, identities share one person
`person:<hex>`, whose namespace holds what any of them said.

Everything lives in the LangGraph store beside the memories, so every replica sees the
same links and `membot migrate` carries them:
- `("identities",)` identity (escaped as in its namespace) -> {"person", "linked_at"}
- `("people",)` person -> {"members": [identity, ...]}
- `("link_codes",)` sha256(code) -> {"identity", "expires_at"} (the code itself is never
  stored: a copy of the store cannot link anyone)
- `("link_state",)` identity -> {"code": hash of its live code, "failures": [times]}

Codes are 10 characters of Crockford's base32 (50 bits), single use, valid 10 minutes;
an identity gets 5 wrong codes per 15 minutes. Callers serialise changes with a lock
(`MemoryBot` uses one across replicas), so a code is redeemed at most once.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from langgraph.store.base import BaseStore

from engine.memory.namespace import memory_namespace

IDENTITIES = ("identities",)
PEOPLE = ("people",)
LINK_CODES = ("link_codes",)
LINK_STATE = ("link_state",)

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
CODE_LENGTH = 10  # 50 bits
CODE_LIFETIME = timedelta(minutes=10)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
PERSON_PREFIX = "person:"


def tenancy_of(identity: str) -> str:
    """`slack:T1:U2` -> `slack:T1`; `console:alice` -> `console`."""
    return identity.rpartition(":")[0]


def said_within(thread_id: str, tenancy: str) -> bool:
    """Whether a thread belongs to `tenancy` (a memory's source thread: where it was said)."""
    return bool(tenancy) and thread_id.startswith(tenancy + ":")


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def shown(code: str) -> str:
    """As people read it: `ABCDE-FGHJK`."""
    return f"{code[:5]}-{code[5:]}"


def normalised(typed: str) -> str:
    """What a person typed, as a code: case, spaces and dashes ignored, and the letters
    Crockford's base32 leaves out read as the digits they look like."""
    table = str.maketrans({"O": "0", "I": "1", "L": "1"})
    return "".join(ch for ch in typed.upper() if ch.isalnum()).translate(table)


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


@dataclass(frozen=True)
class Code:
    code: str  # as shown to the person
    expires_at: datetime


@dataclass(frozen=True)
class Redeemed:
    """The outcome of typing a code: who issued it, or why it failed."""

    issuer: str | None = None
    refusal: str | None = None
    locked_until: datetime | None = None


def _time(raw: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(raw))
    except ValueError:
        return None


def _key(identity: str) -> str:
    """An identity as a store key: the same injective escaping as its memories' namespace
    label (a broken id, a lone surrogate say, still gets a key it can be stored under)."""
    return memory_namespace(identity)[1]


class Identities:
    """The store-backed links between identities. Not locked itself: see the module."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store

    async def person(self, identity: str) -> str:
        """Whose memories `identity` reads and writes: its person, or itself."""
        item = await self.store.aget(IDENTITIES, _key(identity))
        person = item.value.get("person") if item is not None else None
        return person if isinstance(person, str) and person else identity

    async def members(self, owner: str) -> list[str]:
        """The identities sharing `owner`'s memories; `owner` is what `person` gave (an
        unlinked identity is its own, only member: no lookup)."""
        if not owner.startswith(PERSON_PREFIX):
            return [owner]
        item = await self.store.aget(PEOPLE, owner)
        members = item.value.get("members") if item is not None else None
        return [m for m in members if isinstance(m, str)] if isinstance(members, list) else []

    async def issue(self, identity: str, *, now: datetime | None = None) -> Code:
        """A new code for `identity`; its earlier code, if any, stops working."""
        now = now or datetime.now(UTC)
        state = await self._state(identity)
        if old := state.get("code"):
            await self.store.adelete(LINK_CODES, old)
        code = new_code()
        expires = now + CODE_LIFETIME
        value = {"identity": identity, "expires_at": expires.isoformat()}
        await self.store.aput(LINK_CODES, code_hash(code), value, index=False)
        await self._save_state(identity, {**state, "code": code_hash(code)})
        return Code(shown(code), expires)

    async def redeem(self, identity: str, typed: str, *, now: datetime | None = None) -> Redeemed:
        """Use up a code typed by `identity`: its issuer, or a refusal (wrong, expired,
        used, too many attempts). A code works once; a failure counts toward the limit."""
        now = now or datetime.now(UTC)
        state = await self._state(identity)
        failures = [
            t
            for t in (_time(raw) for raw in state.get("failures", []))
            if t and now - t < FAILURE_WINDOW
        ]
        if len(failures) >= MAX_FAILURES:
            return Redeemed(
                refusal="Too many wrong codes. Wait a little, then try again.",
                locked_until=min(failures) + FAILURE_WINDOW,
            )
        code = normalised(typed)
        found = await self.store.aget(LINK_CODES, code_hash(code)) if code else None
        issuer = found.value.get("identity") if found is not None else None
        expires = _time(found.value.get("expires_at")) if found is not None else None
        if found is not None:
            await self.store.adelete(LINK_CODES, found.key)  # single use, even when refused
        if not isinstance(issuer, str) or expires is None or expires <= now:
            failures.append(now)
            await self._save_state(
                identity, {**state, "failures": [t.isoformat() for t in failures]}
            )
            why = "That code has expired." if found is not None else "That code isn't valid."
            return Redeemed(refusal=f"{why} Ask for a new one with /link on your other account.")
        await self._save_state(identity, {**state, "failures": []})
        return Redeemed(issuer=issuer)

    async def person_for(self, identities: list[str]) -> str:
        """The person `identities` would become: one of theirs, or a new one."""
        people = {await self.person(i) for i in identities}
        existing = sorted(p for p in people if p.startswith(PERSON_PREFIX))
        return existing[0] if existing else f"{PERSON_PREFIX}{uuid.uuid4().hex}"

    async def join(
        self, identities: list[str], person: str | None = None, *, now: datetime | None = None
    ) -> str:
        """Make `identities` one person (`person`, by default `person_for` them). Joining
        the same accounts again changes nothing."""
        now = now or datetime.now(UTC)
        person = person or await self.person_for(identities)
        people = {await self.person(i) for i in identities}
        absorbed = sorted(p for p in people if p.startswith(PERSON_PREFIX) and p != person)
        members = [m for p in (person, *absorbed) for m in await self.members(p)]
        members = list(dict.fromkeys(members))
        for identity in identities:
            if identity not in members:
                members.append(identity)
            value = {"person": person, "linked_at": now.isoformat()}
            await self.store.aput(IDENTITIES, _key(identity), value, index=False)
        await self.store.aput(PEOPLE, person, {"members": members}, index=False)
        for group in absorbed:  # two linked groups became one
            await self.store.adelete(PEOPLE, group)
        return person

    async def leave(self, identity: str) -> str | None:
        """Take `identity` out of its person; returns that person, None if unlinked."""
        person = await self.person(identity)
        if person == identity:
            return None
        members = [m for m in await self.members(person) if m != identity]
        await self.store.adelete(IDENTITIES, _key(identity))
        if members:
            await self.store.aput(PEOPLE, person, {"members": members}, index=False)
        else:
            await self.store.adelete(PEOPLE, person)
        return person

    async def _state(self, identity: str) -> dict[str, Any]:
        item = await self.store.aget(LINK_STATE, _key(identity))
        return dict(item.value) if item is not None else {}

    async def _save_state(self, identity: str, state: dict[str, Any]) -> None:
        await self.store.aput(LINK_STATE, _key(identity), state, index=False)
