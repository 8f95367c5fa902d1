"""A local fake of Discord on 127.0.0.1, for tests that drive the real `discord.py` client.

Why it exists: what breaks a Discord bot lives on the wire and inside discord.py (the gateway
handshake, intents, member chunking, how replies and allowed mentions serialise, the interaction
callback and follow-up webhooks, the 3-second ack rule). Mocking our own code tests none of that,
and discord.com is out of reach from tests. So this server speaks just enough Discord, in the
test's own event loop, for an unmodified `discord.Client` to log in, connect, sync and answer::

    async with FakeDiscord() as fake:
        with fake.patch_client():  # Route.BASE and the default gateway URL -> this server
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            await client.login(fake.token)
            task = asyncio.create_task(client.connect())
            await fake.dispatch("MESSAGE_CREATE", fake.message_create(MEMBER_ID, "hi", ...))
            await fake.wait_for("POST", "/channels/{channel_id}/messages")  # -> [Call(...)]

As Discord does: the gateway compresses as its URL asks (zlib-stream or zstd-stream); guild
members arrive by chunking (op 8) unless the presences intent is on; message events are dropped
without GUILD_MESSAGES / DIRECT_MESSAGES and lose their content without MESSAGE_CONTENT (unless
a DM, a mention of the bot or the bot's own); the bot's own messages come back as MESSAGE_CREATE;
empty or >2000-character messages are 400s, when created and when edited; a post that repeats a
nonce with `enforce_nonce` returns the message made before instead of a second one; an
interaction is acknowledged once, before any follow-up, and not after its window closed.
Discord's window is 3 s; a wall-clock window would fail tests whenever the machine is busy, so
none applies by default (`ack_deadline=None`): a test closes the window itself
(`fake.ack_deadline = -1`) or sets one in seconds. Unknown routes are recorded and answered 404.

Every version of every message the bot makes is kept in order (`revisions`): its creation, each
edit (with the request, so its `allowed_mentions` can be checked) and its deletion. Streamed
answers are observed through them: `versions(message_id)`, `made_by(call)`.
"""

# The waits take `timeout=` because tests read better that way than wrapped in asyncio.timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import re
import secrets
import socket
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yarl
from aiohttp import WSMsgType, web
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.fakes.waits import WAIT

JSON = dict[str, Any]
ADMINISTRATOR, MANAGE_GUILD, ALL_PERMISSIONS = 1 << 3, 1 << 5, (1 << 53) - 1
# @everyone: view, send, embed, attach, history, react, use app commands, threads.
EVERYONE_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 31, 35, 38))
PRESENCES, GUILD_MESSAGES, DM_MESSAGES, MESSAGE_CONTENT = 1 << 8, 1 << 9, 1 << 12, 1 << 15
EPHEMERAL, LOADING = 1 << 6, 1 << 7
APP_FLAGS = (1 << 12) | (1 << 14) | (1 << 18)  # privileged intents approved for the app
APPLICATION_ID = 1100000000000000001  # also the bot's user id, as for apps made since 2019
GUILD_ID, CHANNEL_ID, DM_CHANNEL_ID = 1200000000000000001, 1200000000000000002, 1200000000000000003
ADMIN_ROLE_ID, ADMIN_ID, MEMBER_ID = 1200000000000000004, 1300000000000000001, 1300000000000000002
TRUE = ("1", "true", "True")
DISCORD_EPOCH_MS = 1_420_070_400_000
NONCE_WINDOW_MS = 5 * 60 * 1000  # Discord checks a repeated nonce "in the past few minutes"
UPLOAD_LIMIT = 10 * 1024 * 1024  # a file, without Nitro or server boosts (the interaction's too)


@dataclass
class Role:
    id: int
    name: str
    permissions: int = 0
    position: int = 1


@dataclass
class Member:
    """A guild member; its permissions are @everyone's plus its roles'."""

    user_id: int
    name: str
    roles: list[int] = field(default_factory=list)
    bot: bool = False


@dataclass
class Channel:
    id: int
    name: str = "general"
    type: int = 0  # GUILD_TEXT; 2 voice, 4 category, 5 announcement, 13 stage, 11 thread
    parent_id: int | None = None  # threads: the channel they belong to
    owner_id: int | None = None  # threads: who started them


@dataclass
class Guild:
    """The bot's own member is implied; @everyone is the role whose id is the guild's."""

    id: int
    name: str = "Test Guild"
    channels: list[Channel] = field(default_factory=list)
    members: list[Member] = field(default_factory=list)
    roles: list[Role] = field(default_factory=list)
    owner_id: int = 1  # owners hold every permission, so nobody configured owns it by default
    everyone_permissions: int = EVERYONE_PERMISSIONS


@dataclass
class DMChannel:
    id: int
    user_id: int


def default_guilds() -> list[Guild]:
    """One guild, one text channel, an admin (a MANAGE_GUILD role) and a regular member."""
    members = [Member(ADMIN_ID, "alice", roles=[ADMIN_ROLE_ID]), Member(MEMBER_ID, "bob")]
    roles = [Role(ADMIN_ROLE_ID, "admin", permissions=MANAGE_GUILD)]
    return [Guild(GUILD_ID, channels=[Channel(CHANNEL_ID)], members=members, roles=roles)]


@dataclass(frozen=True)
class Call:
    """One REST request; `path` is relative to the API base, `json` the body (or payload_json)."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    query: dict[str, str]
    # When it arrived (`time.perf_counter()`), for bench/; tests never assert a duration.
    at: float = field(default_factory=time.perf_counter, compare=False)
    # Files uploaded with it (multipart `files[n]` parts), in the order they came.
    files: tuple[Upload, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Upload:
    """One file of a multipart request: its form field (`files[n]`), name, type and bytes."""

    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Revision:
    """One version of a message the bot made, in the order Discord saw them: its creation
    (a channel post, an interaction response or a follow-up), an edit, or its deletion
    (`content` None). `call` is the request that made it: its body holds `allowed_mentions`."""

    message_id: int
    call: Call
    content: str | None


# The request being handled: each aiohttp request runs in its own task, so a handler can
# tell which call made the message it creates or edits.
_CALL: contextvars.ContextVar[Call] = contextvars.ContextVar("fake_discord_call")


@dataclass
class _Interaction:
    token: str
    type: int
    channel_id: int
    message_id: int | None
    created: float = field(default_factory=time.monotonic)
    acked: bool = False
    original: JSON | None = None
    modal: JSON | None = None  # the modal it was answered with (callback type 9)
    message: JSON | None = None  # the message a component (or its modal) belongs to


@dataclass
class _Session:
    """A gateway session: what the client identified with and the events' sequence."""

    id: str
    identify: JSON
    seq: int = 0


@dataclass
class _Connection:
    """One gateway websocket; several at once when several clients share a token (replicas)."""

    ws: web.WebSocketResponse
    compress: Callable[[bytes], bytes] | None
    session: _Session | None = None  # after IDENTIFY (or a RESUME)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # keeps sequence and stream in order


class DiscordError(Exception):
    """Raised by a route handler to answer with Discord's JSON error body."""

    def __init__(self, status: int, code: int, message: str, errors: JSON | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, {"message": message, "code": code}
        self.body |= {"errors": errors} if errors else {}


def _form_error(field: str, code: str, message: str) -> DiscordError:
    errors = {field: {"_errors": [{"code": code, "message": message}]}}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def _too_long(value: Any, limit: int, where: str) -> None:
    if value is not None and len(str(value)) > limit:
        raise _form_error(where, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _check_components(rows: list[JSON], where: str) -> None:
    """A message's components as Discord checks them: at most 5 action rows, each with
    up to 5 buttons or one select; custom_id up to 100, a button's label up to 80; a
    select's 1-25 options, each label, value and description up to 100."""
    if len(rows) > 5:
        raise _form_error(where, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    for r, row in enumerate(rows):
        items = row.get("components") or []
        selects = [c for c in items if c["type"] in (3, 5, 6, 7, 8)]
        if row.get("type") != 1 or not items or len(items) > 5 or (selects and len(items) > 1):
            raise _form_error(f"{where}.{r}", "COMPONENT_LAYOUT_WIDTH_EXCEEDED", "Bad row")
        for c, item in enumerate(items):
            at = f"{where}.{r}.components.{c}"
            _too_long(item.get("custom_id"), 100, f"{at}.custom_id")
            if item["type"] == 2:
                _too_long(item.get("label"), 80, f"{at}.label")
            if item["type"] == 3:
                options = item.get("options") or []
                if not 1 <= len(options) <= 25:
                    raise _form_error(f"{at}.options", "BASE_TYPE_BAD_LENGTH", "Must be 1-25")
                _too_long(item.get("placeholder"), 150, f"{at}.placeholder")
                for o, option in enumerate(options):
                    for key in ("label", "value", "description"):
                        _too_long(option.get(key), 100, f"{at}.options.{o}.{key}")


def _check_modal(data: JSON) -> None:
    """A modal as Discord checks it: a title up to 45, custom_id up to 100, 1-5
    components; a label's text up to 45; a text input's value and lengths up to 4,000."""
    _too_long(data.get("title"), 45, "data.title")
    _too_long(data.get("custom_id"), 100, "data.custom_id")
    components = data.get("components") or []
    if not 1 <= len(components) <= 5:
        raise _form_error("data.components", "BASE_TYPE_BAD_LENGTH", "Must be 1-5 in length.")
    for n, top in enumerate(components):
        inner = [top["component"]] if top["type"] == 18 else top.get("components") or []
        if top["type"] == 18:
            _too_long(top.get("label"), 45, f"data.components.{n}.label")
        for item in inner:
            at = f"data.components.{n}"
            _too_long(item.get("custom_id"), 100, f"{at}.custom_id")
            if item["type"] == 4:
                _too_long(item.get("value"), 4000, f"{at}.value")
                for key in ("min_length", "max_length"):
                    if item.get(key) is not None and not 0 <= item[key] <= 4000:
                        raise _form_error(f"{at}.{key}", "NUMBER_TYPE_MAX", "Must be <= 4000")


def _blank(nulls: str = "", falses: str = "", zeros: str = "", lists: str = "") -> JSON:
    """Fields Discord always sends that tests never vary: null, false, 0 and []."""
    out = dict.fromkeys(nulls.split()) | dict.fromkeys(falses.split(), False)
    return out | dict.fromkeys(zeros.split(), 0) | {k: [] for k in lists.split()}


def _route(template: str) -> re.Pattern[str]:
    """A route template like "/channels/{channel_id}/messages" -> a regex with named groups."""
    return re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$")


def _compressor(kind: str | None) -> Callable[[bytes], bytes] | None:
    """Transport compression as discord.py asks for it: one stream, flushed per message."""
    if kind == "zlib-stream":
        z = zlib.compressobj()
        return lambda data: z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    if kind == "zstd-stream":
        import zstandard

        c = zstandard.ZstdCompressor().compressobj()
        return lambda data: c.compress(data) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return None


def _json(data: Any, status: int = 200) -> web.Response:
    """discord.py parses a body only if Content-Type is exactly application/json (no charset)."""
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


def _now() -> str:
    return datetime.now(UTC).isoformat()


class FakeDiscord:
    """Discord's REST API (the routes discord.py uses) and its gateway. Several clients may
    connect with one token (replicas of a bot): each gets every event, as from Discord."""

    def __init__(
        self,
        *,
        application_id: int = APPLICATION_ID,
        bot_user_id: int | None = None,
        bot_name: str = "membot",
        guilds: list[Guild] | None = None,
        dm_channels: list[DMChannel] | None = None,
        token: str = "fake-token",
        heartbeat_interval_ms: int = 41_250,
        ack_deadline: float | None = None,
        echo_own_messages: bool = True,
    ) -> None:
        self.application_id, self.token = application_id, token
        self.bot = Member(bot_user_id or application_id, bot_name, bot=True)
        self.bot_user_id = self.bot.user_id
        self.guilds = default_guilds() if guilds is None else guilds
        default_dms = [DMChannel(DM_CHANNEL_ID, MEMBER_ID)]
        self.dm_channels = default_dms if dm_channels is None else dm_channels
        self.heartbeat_interval_ms, self.ack_deadline = heartbeat_interval_ms, ack_deadline
        self.echo_own_messages = echo_own_messages
        self.calls: list[Call] = []
        self.identify: JSON | None = None  # the last IDENTIFY's `d`: token, intents, properties
        self.gateway_params: dict[str, str] = {}  # the last gateway URL's query: v, encoding, ...
        self.heartbeats = 0
        self.resumes: list[JSON] = []
        self.member_requests: list[JSON] = []  # op 8 REQUEST_GUILD_MEMBERS payloads
        self.commands: dict[int | None, list[JSON]] = {}  # guild id (None: global) -> synced
        self.messages: dict[int, JSON] = {}  # every message the fake knows, by id
        self.sent: list[JSON] = []  # messages the bot made: channel posts, responses, follow-ups
        self.modals: dict[int, JSON] = {}  # interaction id -> the modal it was answered with
        self.revisions: list[Revision] = []  # every version of those, in order
        self._watchers: list[Callable[[Call], None]] = []
        self.session_id, self.port = "", 0  # session_id: the last one started
        self._ids = 0
        self._interactions: dict[int, _Interaction] = {}
        self._connections: list[_Connection] = []
        self._sessions: dict[str, _Session] = {}
        self._ready = asyncio.Event()
        table: list[tuple[str, str, Callable[..., Any], bool]] = [
            ("GET", "/gateway", lambda *_: {"url": self.gateway_url}, False),
            ("GET", "/gateway/bot", self._gateway_bot, True),
            ("GET", "/users/@me", lambda *_: self._user(self.bot_user_id), True),
            ("GET", "/oauth2/applications/@me", self._application, True),
            ("GET", "/applications/@me", self._application, True),
            ("PUT", "/applications/{app}/commands", self._put_commands, True),
            ("PUT", "/applications/{app}/guilds/{guild_id}/commands", self._put_commands, True),
            ("GET", "/channels/{channel_id}", self._get_channel, True),
            ("POST", "/channels/{channel_id}/messages", self._create_message, True),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit, True),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete, True),
            ("POST", "/channels/{channel_id}/typing", self._typing, True),
            ("POST", "/users/@me/channels", self._create_dm, True),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, False),
            ("POST", "/webhooks/{app}/{token}", self._followup, False),
            ("PATCH", "/webhooks/{app}/{token}/messages/{message_id}", self._edit, False),
            ("DELETE", "/webhooks/{app}/{token}/messages/{message_id}", self._delete, False),
        ]
        self._routes = [(method, _route(path), fn, auth) for method, path, fn, auth in table]

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @contextlib.contextmanager
    def patch_client(self) -> Iterator[None]:
        """Point discord.py here, restoring on exit. `Route.BASE` prefixes every REST URL
        (webhooks and interaction callbacks too); a plain `Client` never asks GET /gateway/bot
        but connects to `DiscordWebSocket.DEFAULT_GATEWAY`. Resumes go to READY's URL (ours)."""
        saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self.api_base, yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved

    def calls_to(self, method: str, route: str) -> list[Call]:
        """Calls matching a route template such as "/channels/{channel_id}/messages"."""
        pattern = _route(route)
        return [c for c in self.calls if c.method == method and pattern.match(c.path)]

    def observe(self, watcher: Callable[[Call], None]) -> None:
        """Call `watcher(call)` as each request arrives, before it is answered: a test can
        note what else was true at that moment (how far a model had got, say)."""
        self._watchers.append(watcher)

    def versions(self, message_id: int | str) -> list[Revision]:
        """A message's versions, in order: created, edited ..., perhaps deleted."""
        return [r for r in self.revisions if r.message_id == int(message_id)]

    def made_by(self, call: Call) -> int | None:
        """The id of the message `call` created (None if it created none)."""
        found = (r.message_id for r in self.revisions if r.call is call and r.content is not None)
        return next(found, None)

    def _revised(self, msg: JSON, *, deleted: bool = False) -> None:
        content = None if deleted else str(msg.get("content") or "")
        self.revisions.append(Revision(int(msg["id"]), _CALL.get(), content))

    async def wait_for(
        self,
        method: str,
        route: str,
        count: int = 1,
        timeout: float = WAIT,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Poll until `count` matching calls (those `where` accepts, if given) arrived; the
        client acts in its own tasks."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.calls_to(method, route)
            found = found if where is None else [c for c in found if where(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} {method} {route} within {timeout}s")
            await asyncio.sleep(0.005)

    async def wait_for_reply(self, message: JSON, timeout: float = WAIT) -> Call:
        """The bot's reply to `message` (a `message_create` payload already dispatched): the
        first post in its channel that references it. As a sentinel: dispatch a message that
        must be answered after the ones that must not be, wait for its reply, then count."""

        def replies(call: Call) -> bool:
            ref = (call.json or {}).get("message_reference") or {}
            return str(ref.get("message_id")) == str(message["id"])

        route = f"/channels/{message['channel_id']}/messages"
        (reply, *_) = await self.wait_for("POST", route, timeout=timeout, where=replies)
        return reply

    async def ready(self, timeout: float = WAIT, connections: int = 1) -> None:
        """Wait until the client identified and READY and every GUILD_CREATE went out (on
        `connections` gateway connections at once: one per replica)."""
        await asyncio.wait_for(self._ready.wait(), timeout)
        deadline = time.monotonic() + timeout
        while len(self._identified_connections()) < connections:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not {connections} gateway connections within {timeout}s")
            await asyncio.sleep(0.005)

    def _identified_connections(self) -> list[_Connection]:
        return [c for c in self._connections if c.session is not None and not c.ws.closed]

    async def __aenter__(self) -> FakeDiscord:
        app = web.Application(client_max_size=UPLOAD_LIMIT + 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", r"/api/v{version:\d+}/{path:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for connection in list(self._connections):
            await connection.ws.close()
        await self._runner.cleanup()

    # -- gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.gateway_params = dict(request.query)
        conn = _Connection(ws, _compressor(request.query.get("compress")))
        self._connections.append(conn)
        try:
            await self._send(conn, 10, {"heartbeat_interval": self.heartbeat_interval_ms})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                op, d = (payload := json.loads(msg.data))["op"], payload.get("d")
                if op == 1:  # HEARTBEAT
                    self.heartbeats += 1
                    await self._send(conn, 11, None)
                elif op == 2 and d["token"] != self.token:
                    await ws.close(code=4004, message=b"Authentication failed.")
                elif op == 2:
                    await self._identified(conn, d)
                elif op == 6:  # RESUME: no events are replayed; a stale session is invalidated
                    self.resumes.append(d)
                    conn.session = self._sessions.get(d["session_id"])
                    if conn.session is not None:
                        await self._send(conn, 0, {}, "RESUMED")
                    else:
                        await self._send(conn, 9, False)  # INVALID_SESSION, not resumable
                elif op == 8:
                    self.member_requests.append(d)
                    await self._members_chunk(conn, d)
        finally:
            self._connections.remove(conn)
        return ws

    async def _send(self, conn: _Connection, op: int, d: Any, event: str | None = None) -> None:
        async with conn.lock:  # sequence numbers and the compressed stream stay in order
            seq = None
            if op == 0 and conn.session is not None:
                conn.session.seq += 1
                seq = conn.session.seq
            raw = json.dumps({"op": op, "d": d, "s": seq, "t": event})
            if conn.compress:
                await conn.ws.send_bytes(conn.compress(raw.encode()))
            else:
                await conn.ws.send_str(raw)

    async def _identified(self, conn: _Connection, d: JSON) -> None:
        self.identify, self.session_id = d, secrets.token_hex(16)
        conn.session = self._sessions[self.session_id] = _Session(self.session_id, d)
        ready = {"v": 10, "user": self._user(self.bot_user_id), "session_id": self.session_id}
        ready |= {"resume_gateway_url": self.gateway_url, "private_channels": []}
        ready["shard"] = d.get("shard", [0, 1])  # one connection serves whichever shard asks
        ready["guilds"] = [{"id": str(g.id), "unavailable": True} for g in self.guilds]
        ready["application"] = {"id": str(self.application_id), "flags": APP_FLAGS}
        await self._send(conn, 0, ready, "READY")
        for g in self.guilds:
            await self._send(conn, 0, self._guild_create(g, d), "GUILD_CREATE")
        self._ready.set()

    async def _members_chunk(self, conn: _Connection, d: JSON) -> None:
        guild = self._guild(d["guild_id"])
        ids, query = {int(i) for i in d.get("user_ids") or []}, d.get("query", "").lower()
        found = [m for m in self._members(guild) if m.name.lower().startswith(query)]
        found = [m for m in found if not ids or m.user_id in ids][: d.get("limit") or None]
        chunk = {"guild_id": str(guild.id), "chunk_index": 0, "chunk_count": 1}
        chunk["members"] = [self._member(guild, m) for m in found]
        chunk |= {"nonce": d["nonce"]} if "nonce" in d else {}
        await self._send(conn, 0, chunk, "GUILD_MEMBERS_CHUNK")

    async def dispatch(self, event: str, data: JSON) -> bool:
        """Send `event` as op 0 on every identified connection (replicas sharing the token
        each get it, as from Discord). False (nothing sent) where Discord would not deliver
        it for the identified intents; message content is blanked as without
        MESSAGE_CONTENT."""
        connections = self._identified_connections()
        if not connections:
            raise RuntimeError("no identified gateway connection")
        if event == "INTERACTION_CREATE":  # the acknowledgement clock starts now
            self.know_interaction(data)
        sent = False
        for conn in connections:
            assert conn.session is not None
            if (shown := self._as_seen(conn.session.identify, event, data)) is not None:
                await self._send(conn, 0, shown, event)
                sent = True
        return sent

    def _as_seen(self, identify: JSON, event: str, data: JSON) -> JSON | None:
        """`data` as a client identified with `identify` receives it, or None if not at all."""
        intents, in_guild = identify.get("intents", 0), "guild_id" in data
        if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE"):
            if not intents & (GUILD_MESSAGES if in_guild else DM_MESSAGES):
                return None
            exempt = {int(u["id"]) for u in data.get("mentions", [])} | {int(data["author"]["id"])}
            if in_guild and not intents & MESSAGE_CONTENT and self.bot_user_id not in exempt:
                return data | {"content": ""} | _blank(lists="embeds attachments components")
        return data

    def know_interaction(self, data: JSON, *, acknowledged: bool = False) -> None:
        """Take note of an INTERACTION_CREATE payload (`dispatch` does) so its callback and
        follow-ups are accepted. Sent again (to a second connection, as to another replica
        on the same token) it is the same interaction: acknowledged once, whichever client
        is first. `acknowledged`: one a client, since gone, already deferred."""
        message_id = int(data["message"]["id"]) if "message" in data else None
        entry = _Interaction(data["token"], data["type"], int(data["channel_id"]), message_id)
        entry.acked, entry.message = acknowledged, data.get("message")
        self._interactions.setdefault(int(data["id"]), entry)

    async def reconnect(self) -> None:
        """Send op 7 RECONNECT: discord.py closes and RESUMEs at `resume_gateway_url`."""
        for conn in self._identified_connections():
            await self._send(conn, 7, None)

    # -- payload builders ------------------------------------------------------------------

    def _snowflake(self) -> int:
        self._ids += 1
        return ((time.time_ns() // 1_000_000 - 1_420_070_400_000) << 22) | self._ids

    def _guild(self, guild_id: int | str) -> Guild:
        if (g := next((g for g in self.guilds if g.id == int(guild_id)), None)) is None:
            raise DiscordError(403, 50001, "Missing Access")
        return g

    def _members(self, guild: Guild) -> list[Member]:
        return [*guild.members, self.bot]

    def _find(self, guild: Guild, user_id: int) -> Member | None:
        return next((m for m in self._members(guild) if m.user_id == user_id), None)

    def _user(self, user_id: int) -> JSON:
        m = next(filter(None, (self._find(g, user_id) for g in self.guilds)), None)
        m = self.bot if user_id == self.bot_user_id else m or Member(user_id, f"user{user_id}")
        user = {"id": str(user_id), "username": m.name, "discriminator": "0", "bot": m.bot}
        user |= {"global_name": None if m.bot else m.name}
        return user | _blank("avatar", zeros="public_flags")

    def _member(self, guild: Guild, m: Member, *, with_user: bool = True) -> JSON:
        member = {"roles": [str(r) for r in m.roles], "joined_at": "2024-01-01T00:00:00+00:00"}
        member |= _blank("nick avatar premium_since communication_disabled_until")
        member |= _blank(falses="deaf mute pending", zeros="flags")
        return member | ({"user": self._user(m.user_id)} if with_user else {})

    def permissions(self, guild: Guild, user_id: int) -> int:
        """Guild-level permissions as Discord computes them (no channel overwrites)."""
        member = self._find(guild, user_id)
        roles, perms = member.roles if member else [], guild.everyone_permissions
        for role in (r for r in guild.roles if r.id in roles):
            perms |= role.permissions
        return ALL_PERMISSIONS if user_id == guild.owner_id or perms & ADMINISTRATOR else perms

    def _channel(self, channel_id: int | str) -> tuple[Guild | None, JSON]:
        for g in self.guilds:
            for c in (c for c in g.channels if c.id == int(channel_id)):
                channel = {"id": str(c.id), "type": c.type, "guild_id": str(g.id), "name": c.name}
                channel |= _blank("parent_id topic last_message_id", "nsfw", "position flags")
                channel |= _blank(zeros="rate_limit_per_user", lists="permission_overwrites")
                if c.type in (2, 13):  # voice and stage channels
                    channel |= {"bitrate": 64000, "user_limit": 0, "rtc_region": None}
                if c.type in (10, 11, 12):  # threads are channels with a parent and an owner
                    channel |= {"parent_id": str(c.parent_id), "owner_id": str(c.owner_id)}
                    channel |= {"message_count": 0, "member_count": 1, "total_message_sent": 0}
                    channel["thread_metadata"] = {
                        "archived": False,
                        "auto_archive_duration": 1440,
                        "locked": False,
                        "archive_timestamp": _now(),
                    }
                return g, channel
        for dm in (dm for dm in self.dm_channels if dm.id == int(channel_id)):
            channel = {"id": str(dm.id), "type": 1, "recipients": [self._user(dm.user_id)]}
            return None, channel | _blank("last_message_id", zeros="flags")
        raise DiscordError(404, 10003, "Unknown Channel")

    def _guild_create(self, g: Guild, identify: JSON) -> JSON:
        everyone = Role(g.id, "@everyone", g.everyone_permissions, position=0)
        roles = [
            {"id": str(r.id), "name": r.name, "permissions": str(r.permissions)}
            | {"position": r.position, "colors": {"primary_color": 0}}
            | _blank("icon unicode_emoji", "hoist managed mentionable", "color flags")
            for r in [everyone, *g.roles]
        ]
        # Without the presences intent Discord sends only the bot's member; the rest is chunked.
        with_all = identify.get("intents", 0) & PRESENCES
        shown = self._members(g) if with_all else [self.bot]
        guild = {"id": str(g.id), "name": g.name, "owner_id": str(g.owner_id), "roles": roles}
        threads = [self._channel(c.id)[1] for c in g.channels if c.type in (10, 11, 12)]
        channels = [self._channel(c.id)[1] for c in g.channels if c.type not in (10, 11, 12)]
        guild |= {"channels": channels, "joined_at": _now()}
        guild |= {"members": [self._member(g, m) for m in shown]}
        guild |= {"member_count": len(self._members(g))}
        guild |= {"preferred_locale": "en-US", "afk_timeout": 300}
        guild |= _blank("icon banner splash description system_channel_id afk_channel_id")
        guild |= _blank(falses="unavailable large nsfw", zeros="verification_level mfa_level")
        guild |= _blank(zeros="premium_tier explicit_content_filter default_message_notifications")
        guild |= _blank(lists="emojis stickers features presences voice_states")
        return guild | {"threads": threads}

    def _message(self, author_id: int, content: str, channel_id: int | str, **fields: Any) -> JSON:
        """A message as REST returns it, remembered so replies and clicks can refer to it."""
        mentions = [self._user(int(i)) for i in dict.fromkeys(re.findall(r"<@!?(\d+)>", content))]
        msg = {"id": str(self._snowflake()), "channel_id": str(channel_id), "type": 0}
        msg |= {"author": self._user(author_id), "content": content, "timestamp": _now()}
        msg |= {"mentions": mentions, "mention_roles": re.findall(r"<@&(\d+)>", content)}
        msg |= {"mention_everyone": "@everyone" in content or "@here" in content}
        msg |= _blank("edited_timestamp", "tts pinned", "flags", "attachments embeds components")
        if ref := fields.get("message_reference"):  # a reply: Discord inlines what it replies to
            msg |= {"type": 19, "referenced_message": self.messages.get(int(ref["message_id"]))}
        msg |= fields
        self.messages[int(msg["id"])] = msg
        return msg

    def _for_gateway(self, msg: JSON, guild: Guild | None) -> JSON:
        """Gateway messages in a guild add guild_id and the author's and mentioned members."""
        if guild is None:
            return msg
        msg = msg | {"guild_id": str(guild.id), "mentions": [dict(u) for u in msg["mentions"]]}
        if author := self._find(guild, int(msg["author"]["id"])):
            msg["member"] = self._member(guild, author, with_user=False)
        for u in msg["mentions"]:
            if found := self._find(guild, int(u["id"])):
                u["member"] = self._member(guild, found, with_user=False)
        return msg

    def message_create(
        self,
        author: int | Member,
        content: str,
        *,
        channel_id: int,
        guild_id: int | None = None,
        mentions_bot: bool = False,
        author_bot: bool = False,
        message_id: int | None = None,
        message_reference: int | JSON | None = None,
    ) -> JSON:
        """A MESSAGE_CREATE payload. Mentions come from `<@id>` in the content, as in Discord;
        `mentions_bot` prefixes one. The guild defaults to the channel's (none for a DM)."""
        uid = author.user_id if isinstance(author, Member) else author
        if mentions_bot and f"<@{self.bot_user_id}>" not in content:
            content = f"<@{self.bot_user_id}> {content}"
        guild = self._guild(guild_id) if guild_id else self._channel(channel_id)[0]
        fields: JSON = {"id": str(message_id)} if message_id else {}
        if isinstance(message_reference, int):
            ids = {"message_id": str(message_reference), "channel_id": str(channel_id)}
            message_reference = {"type": 0, **ids} | ({"guild_id": str(guild.id)} if guild else {})
        fields |= {"message_reference": message_reference} if message_reference else {}
        msg = self._message(uid, content, channel_id, **fields)
        msg["author"]["bot"] |= author_bot
        return self._for_gateway(msg, guild)

    def _interaction(
        self, kind: int, user: int | Member, channel_id: int, guild_id: int | None
    ) -> JSON:
        uid = user.user_id if isinstance(user, Member) else user
        guild, channel = self._channel(channel_id)
        guild = self._guild(guild_id) if guild_id else guild
        payload = {"id": str(self._snowflake()), "application_id": str(self.application_id)}
        payload |= {"type": kind, "token": "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)}
        payload |= {"version": 1, "channel_id": str(channel_id), "channel": channel}
        payload |= {"locale": "en-US", "entitlements": [], "attachment_size_limit": 10_485_760}
        if guild is None:  # a DM with the bot: `user` instead of `member`, context BOT_DM
            owners = {"authorizing_integration_owners": {"0": "0"}, "context": 1}
            return payload | owners | {"user": self._user(uid), "app_permissions": "0"}
        if (m := self._find(guild, uid)) is None:
            raise ValueError(f"user {uid} is not a member of guild {guild.id}")
        perms = str(self.permissions(guild, uid))
        payload |= {"guild_id": str(guild.id), "guild_locale": "en-US", "context": 0}
        payload["guild"] = {"id": str(guild.id), "locale": "en-US", "features": []}
        payload["channel"] = channel | {"permissions": perms}
        payload["member"] = self._member(guild, m) | {"permissions": perms}
        payload["app_permissions"] = str(self.permissions(guild, self.bot_user_id))
        return payload | {"authorizing_integration_owners": {"0": str(guild.id)}}

    def interaction_create(
        self,
        name: str,
        options: JSON | list[JSON] | None = None,
        *,
        user: int | Member,
        channel_id: int,
        guild_id: int | None = None,
        type: int = 2,
        command_type: int = 1,
    ) -> JSON:
        """An application command (type 2; 4 is autocomplete). `options` is Discord's option
        list or `{"name": value}`. A command synced to the guild carries its guild_id, which is
        how discord.py's tree tells guild commands from global ones: sync before dispatching."""
        payload = self._interaction(type, user, channel_id, guild_id)
        guild_commands = self.commands.get(int(payload.get("guild_id", 0)), [])
        synced = [c for c in [*guild_commands, *self.commands.get(None, [])] if c["name"] == name]
        data = {"id": synced[0]["id"] if synced else str(self._snowflake()), "name": name}
        data["type"] = command_type
        if synced and "guild_id" in synced[0]:
            data["guild_id"] = synced[0]["guild_id"]
        if isinstance(options, dict):
            kinds = {bool: 5, int: 4, float: 10, str: 3}
            options = [
                {"name": k, "type": kinds[v.__class__], "value": v} for k, v in options.items()
            ]
        return payload | {"data": data | ({"options": options} if options else {})}

    def component_interaction(
        self,
        custom_id: str,
        *,
        user: int | Member,
        channel_id: int,
        guild_id: int | None = None,
        message: JSON | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> JSON:
        """A click (type 3; component 2 is a button) on `message`, by default the bot's last
        message in the channel. Select menus pass `component_type` and `values`."""
        payload = self._interaction(3, user, channel_id, guild_id)
        in_channel = [m for m in self.sent if m["channel_id"] == str(channel_id)]
        if (message := message or (in_channel[-1] if in_channel else None)) is None:
            raise ValueError(f"no bot message in channel {channel_id} to click on")
        data = {"custom_id": custom_id, "component_type": component_type}
        data |= {"values": values} if values is not None else {}
        return payload | {"message": message, "data": data}

    def modal_submit(
        self, opened_by: JSON, values: dict[str, str], *, user: int | Member | None = None
    ) -> JSON:
        """A modal's submission (type 5): the modal the interaction `opened_by` was
        answered with (callback type 9), filled in with `values` (text inputs' custom_id ->
        value), by `opened_by`'s user unless told. Discord sends the components as the modal
        laid them out (a label holds its `component`; a legacy action row its `components`)
        and, for a modal opened from a component, the message it belongs to."""
        modal = self.modals.get(int(opened_by["id"]))
        if modal is None:
            raise ValueError(f"interaction {opened_by['id']} was not answered with a modal")
        who = user or int((opened_by.get("member") or opened_by)["user"]["id"])
        guild_id = int(opened_by["guild_id"]) if "guild_id" in opened_by else None
        payload = self._interaction(5, who, int(opened_by["channel_id"]), guild_id)

        def filled(component: JSON) -> JSON:
            out = {"type": component["type"], "id": component.get("id", 0)}
            if component["type"] == 18:
                return out | {"component": filled(component["component"])}
            if component["type"] == 1:
                return out | {"components": [filled(c) for c in component["components"]]}
            custom_id = component.get("custom_id", "")
            return out | {"custom_id": custom_id, "value": values.get(custom_id, "")}

        data = {"custom_id": modal["custom_id"]}
        data["components"] = [filled(c) for c in modal["components"]]
        message = opened_by.get("message")
        return payload | {"data": data} | ({"message": message} if message else {})

    # -- REST ------------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path, body, files = "/" + request.match_info["path"], None, []
        if request.content_type.startswith("multipart/"):  # uploads: JSON rides in payload_json
            form = await request.post()
            body = json.loads(str(form.get("payload_json", "null")))
            for name, part in form.items():
                if isinstance(part, web.FileField):
                    data = part.file.read()
                    files.append(Upload(name, part.filename, part.content_type, data))
        elif request.can_read_body:
            body = await request.json()
        headers, query = dict(request.headers), dict(request.query)
        call = Call(request.method, path, body, headers, query, files=tuple(files))
        self.calls.append(call)
        _CALL.set(call)
        for watcher in self._watchers:
            watcher(call)
        try:
            for method, pattern, handler, auth in self._routes:
                if method != request.method or not (match := pattern.match(path)):
                    continue
                if auth and headers.get("Authorization") != f"Bot {self.token}":
                    raise DiscordError(401, 0, "401: Unauthorized")
                result = handler(match.groupdict(), body, query)
                result = await result if asyncio.iscoroutine(result) else result
                return web.Response(status=204) if result is None else _json(result)
            raise DiscordError(404, 0, "404: Not Found")
        except DiscordError as e:
            return _json(e.body, e.status)

    def _gateway_bot(self, *_: Any) -> JSON:
        limit = {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _application(self, *_: Any) -> JSON:
        app = {"id": str(self.application_id), "name": self.bot.name, "description": ""}
        app |= {"owner": self._user(1), "verify_key": "0" * 64, "flags": APP_FLAGS}
        app |= {"bot": self._user(self.bot_user_id)}
        return app | _blank("icon team", "bot_public bot_require_code_grant")

    def _put_commands(self, m: dict[str, str], body: list[JSON], _: Any) -> list[JSON]:
        """Bulk overwrite: echo the commands with ids, keeping the ids of names already known."""
        guild_id = self._guild(m["guild_id"]).id if "guild_id" in m else None
        known = {c["name"]: c["id"] for c in self.commands.get(guild_id, [])}
        defaults = {"type": 1, "default_member_permissions": None, "nsfw": False}
        ids = {"application_id": str(self.application_id)}
        ids |= {"guild_id": str(guild_id)} if guild_id else {}
        self.commands[guild_id] = []
        for c in body:
            ids |= {"id": known.get(c["name"]) or str(self._snowflake())}
            self.commands[guild_id].append(defaults | c | ids | {"version": str(self._snowflake())})
        return self.commands[guild_id]

    def _get_channel(self, m: dict[str, str], *_: Any) -> JSON:
        return self._channel(m["channel_id"])[1]

    def _typing(self, m: dict[str, str], *_: Any) -> None:
        self._channel(m["channel_id"])  # 404 for an unknown channel, else 204

    def _create_dm(self, _: Any, body: JSON, __: Any) -> JSON:
        user_id = int(body["recipient_id"])
        if (dm := next((d for d in self.dm_channels if d.user_id == user_id), None)) is None:
            self.dm_channels.append(dm := DMChannel(self._snowflake(), user_id))
        return self._channel(dm.id)[1]

    @staticmethod
    def _check_content(body: JSON) -> None:
        """A message as it would be (a new one's body, or an edited one merged with its
        edit): at most 2,000 characters, and not empty."""
        if len(body.get("content") or "") > 2000:
            raise _form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if not any(body.get(k) for k in ("content", "embeds", "components", "attachments", "poll")):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        _check_components(body.get("components") or [], "components")

    def _same_nonce(self, channel_id: str, body: JSON) -> JSON | None:
        """The bot's message with this post's nonce, made in the past few minutes, when the
        post asks Discord to enforce the nonce (discord.py always does)."""
        nonce = body.get("nonce")
        if nonce is None or not body.get("enforce_nonce"):
            return None
        now_ms = time.time_ns() // 1_000_000 - DISCORD_EPOCH_MS
        for msg in reversed(self.sent):
            recent = now_ms - (int(msg["id"]) >> 22) < NONCE_WINDOW_MS
            same = msg["channel_id"] == channel_id and str(msg.get("nonce")) == str(nonce)
            if recent and same and int(msg["id"]) in self.messages:
                return msg
        return None

    async def _create_message(self, m: dict[str, str], body: JSON, _: Any) -> JSON:
        guild = self._channel(m["channel_id"])[0]
        self._check_content(body)
        if (made := self._same_nonce(m["channel_id"], body)) is not None:
            return made  # no second message
        fields = {k: body[k] for k in ("embeds", "components", "flags", "nonce") if k in body}
        if ref := body.get("message_reference"):
            if ref.get("fail_if_not_exists", True) and int(ref["message_id"]) not in self.messages:
                code = "MESSAGE_REFERENCE_UNKNOWN_MESSAGE"
                raise _form_error("message_reference", code, "Unknown message")
            fields["message_reference"] = ref
        fields |= self._attachments(body)
        msg = self._message(self.bot_user_id, body.get("content") or "", m["channel_id"], **fields)
        self.sent.append(msg)
        self._revised(msg)
        if self.echo_own_messages and self._identified_connections():
            await self.dispatch("MESSAGE_CREATE", self._for_gateway(msg, guild))
        return msg

    def _acked(self, m: dict[str, str]) -> _Interaction:
        """The interaction behind a webhook token; follow-ups need it acknowledged first."""
        found = next((i for i in self._interactions.values() if i.token == m["token"]), None)
        if found is None or not found.acked or m["app"] != str(self.application_id):
            raise DiscordError(404, 10015, "Unknown Webhook")
        return found

    def _edit(self, m: dict[str, str], body: JSON, _: Any) -> JSON:
        """PATCH a channel message or a webhook one (`@original`: the interaction response;
        for a click answered by a (deferred) update, the message that was clicked). The
        edited message must still be a valid one (content within 2,000, not empty)."""
        msg = self._own_message(m, "edit")
        edited = {k: body[k] for k in ("content", "embeds", "components") if k in body}
        self._check_content(msg | edited)
        msg.update(edited)
        msg.update(edited_timestamp=_now(), flags=msg["flags"] & ~LOADING)
        self._revised(msg)
        return msg

    def _delete(self, m: dict[str, str], *_: Any) -> None:
        """DELETE a channel message or a webhook one: 204, and it is gone."""
        msg = self._own_message(m, "delete")
        del self.messages[int(msg["id"])]
        self._revised(msg, deleted=True)

    def _own_message(self, m: dict[str, str], action: str) -> JSON:
        """The bot's message a PATCH or DELETE names (in the path's channel; for a webhook,
        any the interaction can reach), else Discord's 404 or 403."""
        interaction = self._acked(m) if "token" in m else None
        if interaction and m["message_id"] == "@original":
            msg = interaction.original
            if msg is None and interaction.message_id is not None:
                msg = self.messages.get(interaction.message_id)
        else:
            _ = interaction or self._channel(m["channel_id"])  # 404 for an unknown channel
            msg = self.messages.get(int(m["message_id"])) if m["message_id"].isdigit() else None
            if msg and not interaction and msg["channel_id"] != m["channel_id"]:
                msg = None  # a message of another channel is unknown in this one
        if msg is None or int(msg["id"]) not in self.messages:
            raise DiscordError(404, 10008, "Unknown Message")
        if int(msg["author"]["id"]) == self.bot_user_id:
            return msg
        if action == "edit":
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        raise DiscordError(403, 50013, "Missing Permissions")

    def _callback(self, m: dict[str, str], body: JSON, query: dict[str, str]) -> JSON | None:
        """Answer an interaction, once and within `ack_deadline` (if set). discord.py asks
        `?with_response=1` and then needs this InteractionCallback JSON, not a 204."""
        i = self._interactions.get(int(m["interaction_id"]))
        if i is not None and i.token == m["token"] and i.acked:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        if i is None or i.token != m["token"] or self._late(i):
            raise DiscordError(404, 10062, "Unknown interaction")
        kind, data = body["type"], body.get("data") or {}
        resource: JSON = {"type": kind}
        if kind in (4, 5):  # CHANNEL_MESSAGE_WITH_SOURCE / DEFERRED_... (a "thinking" message)
            if kind == 4:
                self._check_content(data)
            fields = {k: data[k] for k in ("embeds", "components") if k in data}
            fields["flags"] = data.get("flags", 0) | (LOADING if kind == 5 else 0)
            fields |= {"webhook_id": str(self.application_id), "type": 20 if i.type == 2 else 0}
            text = data.get("content") or ""
            i.original = self._message(self.bot_user_id, text, i.channel_id, **fields)
            self.sent.append(i.original)
            self._revised(i.original)
            resource["message"] = i.original
        elif kind == 9:  # MODAL: not an answer to a modal's submission, nor to a ping
            if i.type not in (2, 3):
                raise DiscordError(400, 50035, "Interaction has no modal response for this type")
            _check_modal(data)
            i.modal = self.modals[int(m["interaction_id"])] = data
        elif kind == 7 and i.message_id in self.messages:  # UPDATE_MESSAGE: the clicked one
            _check_components(data.get("components") or [], "data.components")
            self.messages[i.message_id].update({k: v for k, v in data.items() if k != "flags"})
            resource["message"] = self.messages[i.message_id]
            self._revised(resource["message"])
        i.acked = True
        if query.get("with_response") not in TRUE:
            return None
        ephemeral = bool(data.get("flags", 0) & EPHEMERAL)
        answer = {"id": m["interaction_id"], "type": i.type, "response_message_loading": kind == 5}
        answer |= {"response_message_ephemeral": ephemeral}
        if "message" in resource:
            answer["response_message_id"] = resource["message"]["id"]
        return {"interaction": answer, "resource": resource}

    def _late(self, interaction: _Interaction) -> bool:
        deadline = self.ack_deadline
        return deadline is not None and time.monotonic() - interaction.created > deadline

    def _followup(self, m: dict[str, str], body: JSON, query: dict[str, str]) -> JSON | None:
        i = self._acked(m)
        self._check_content(body)
        fields = {k: body[k] for k in ("embeds", "components", "flags", "tts") if k in body}
        fields["webhook_id"] = str(self.application_id)
        fields |= self._attachments(body)
        msg = self._message(self.bot_user_id, body.get("content") or "", i.channel_id, **fields)
        self.sent.append(msg)
        self._revised(msg)
        return msg if query.get("wait") in TRUE else None

    def _attachments(self, body: JSON) -> JSON:
        """The message's `attachments` as Discord returns them, from the request's
        `attachments` (each `id` names its multipart part `files[id]`) and its uploads."""
        wanted = body.get("attachments") or []
        if not wanted:
            return {}
        uploads = {u.field: u for u in _CALL.get().files}
        made = []
        for n, a in enumerate(wanted):
            if (upload := uploads.get(f"files[{a['id']}]")) is None:
                raise _form_error(f"attachments.{n}", "ATTACHMENT_NOT_FOUND", "Unknown file")
            if len(upload.data) > UPLOAD_LIMIT:
                raise DiscordError(413, 40005, "Request entity too large")
            attachment_id, filename = self._snowflake(), a.get("filename") or upload.filename
            url = f"{self.api_base}/attachments/{attachment_id}/{filename}"
            made.append(
                {"id": str(attachment_id), "filename": filename}
                | {"size": len(upload.data), "url": url, "proxy_url": url}
                | {"content_type": upload.content_type}
                | ({"description": a["description"]} if a.get("description") else {})
            )
        return {"attachments": made}

    def uploaded(self, message: JSON) -> dict[str, bytes]:
        """The files a message the bot made carries: filename -> bytes, as uploaded."""
        names = {a["filename"] for a in message.get("attachments") or []}
        call = next(r.call for r in self.revisions if r.message_id == int(message["id"]))
        return {u.filename: u.data for u in call.files if u.filename in names}
