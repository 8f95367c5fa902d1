"""A local fake of Slack on 127.0.0.1, for tests that drive the real `slack_sdk` and `slack_bolt`.

Why it exists: most of what can go wrong in a Slack adapter lives on the wire and inside the SDKs
(how `AsyncWebClient` encodes each method, request signing, Socket Mode envelopes and acks, the
3-second ack budget, bolt's middleware). Mocking our own functions would test none of that, and
slack.com is out of reach from tests. So this server speaks just enough Slack, in the test's own
event loop, for the real clients to do their whole job against it::

    async with FakeSlack() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        slack.users["U1"] = {"id": "U1", "is_admin": False, "team_id": "T1"}
        slack.fail("chat.postMessage", error="ratelimited", status=429)
        await slack.post_event(app_url, app_mention("U1", "<@UBOT> hi"))  # HTTP mode, signed
        await slack.push("events_api", slack.event_payload(message("U1", "hi")))  # Socket Mode
        await slack.wait_for("chat.postMessage")  # -> [Call(method, args, token)]

Web API methods answer only what our bot uses; anything else is `unknown_method`. Like Slack,
`apps.connections.open` wants an `xapp-` token and every other method refuses one. Calls
without a token get `not_authed`; a missing required argument gets `invalid_arguments`.

Messages the bot makes are kept (`messages`, by ts; `bot_messages(channel, thread_ts)`), so a
test reads what each finally shows (`Message.body`) however it got there: posted, edited,
or streamed. Text streaming (`chat.startStream` / `appendStream` / `stopStream`) exists only
with `FakeSlack(streaming=True)`; without it those methods are `unknown_method`, a Slack
that cannot stream, which is what the tests written before streaming expect (the adapter
falls back to its placeholder there). `fail("chat.startStream", error="not_allowed")` makes
one start fail on a streaming fake. A stream follows the methods' documentation and what
slack_sdk sends: it is a reply in a thread (`thread_ts`), names its recipient
(`recipient_user_id` and `recipient_team_id`), takes text as `markdown_text` or as
`chunks` of type `markdown_text` (at most 12,000 characters each), answers `ts`, and after
`stopStream` (which may carry the last text and `blocks`) takes no more appends
(`message_not_in_streaming_state`). `assistant.threads.setStatus` is kept per thread
(`status_of`) and cleared, as Slack does, when the bot replies in that thread.

App Home and modals: `views.publish` / `views.open` check a view as Slack does (at most 100
blocks, text and value lengths, unique block ids; why one was refused is in `view_errors`)
and keep it (`views`, and each person's Home tab in `homes` / `home_of`); `views.open` wants
a trigger_id this fake issued, once. `conversations.open` gives each user one DM channel
(`dms`). `files_upload_v2` is three steps, all here: files.getUploadURLExternal, a POST of
the bytes to the upload URL, files.completeUploadExternal (`files`, with the bytes and the
channel). `app_home_opened`, `view_action_payload` and `view_submission_payload` build what
Slack sends for those.
"""

# The waits take `timeout=` because tests read better that way than wrapped in asyncio.timeout.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import socket
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.waits import WAIT

JSON = dict[str, Any]
_last_micros = 0


def fresh_ts() -> str:
    """A Slack message ts ("seconds.micros"): near now, unique and strictly increasing."""
    global _last_micros
    _last_micros = max(time.time_ns() // 1000, _last_micros + 1)
    return f"{_last_micros // 1_000_000}.{_last_micros % 1_000_000:06d}"


def _rich_text(text: str) -> list[JSON]:
    """The `blocks` Slack attaches to a typed message: text runs and `<@U..>` user mentions."""
    elements: list[JSON] = []
    for i, part in enumerate(re.split(r"<@(\w+)>", text)):
        if i % 2:
            elements.append({"type": "user", "user_id": part})
        elif part:
            elements.append({"type": "text", "text": part})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": "b1", "elements": [section]}]


def app_mention(
    user: str,
    text: str,
    *,
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T1",
) -> JSON:
    """An `app_mention` event as Slack sends it (no `channel_type`: Slack omits it here)."""
    ts = ts or fresh_ts()
    event = {"type": "app_mention", "user": user, "text": text, "ts": ts, "team": team}
    event |= {"channel": channel, "event_ts": ts, "blocks": _rich_text(text)}
    event |= {"client_msg_id": str(uuid.uuid4())}
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def message(
    user: str,
    text: str,
    *,
    channel: str = "D1",
    channel_type: str = "im",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T1",
    bot_id: str | None = None,
    subtype: str | None = None,
    files: list[JSON] | None = None,
) -> JSON:
    """A `message` event. With `files` and no `subtype` it is a `file_share`, as in Slack."""
    ts = ts or fresh_ts()
    event: JSON = {"type": "message", "user": user, "text": text, "ts": ts, "team": team}
    event |= {"channel": channel, "channel_type": channel_type, "event_ts": ts}
    event["blocks"] = _rich_text(text)
    if bot_id:
        event |= {"bot_id": bot_id, "app_id": "A0OTHER"}
    else:
        event["client_msg_id"] = str(uuid.uuid4())
    if files:
        event["files"] = files
        subtype = subtype or "file_share"
    if subtype:
        event["subtype"] = subtype
    return event | ({"thread_ts": thread_ts} if thread_ts else {})


def app_home_opened(
    user: str, *, tab: str = "home", channel: str = "D1", view: JSON | None = None
) -> JSON:
    """An `app_home_opened` event (the person opened the app's Home or Messages tab); `view`
    is the Home view they last saw, which Slack includes once one was published."""
    event = {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab}
    event["event_ts"] = fresh_ts()
    return event | ({"view": view} if view is not None else {})


# Block Kit limits Slack enforces on views (docs.slack.dev/reference/block-kit/...).
_TRIGGER = re.compile(r"\d+\.[0-9a-f]{32}")  # what this fake issues as trigger_id
_TEXT_LIMITS = {"section": 3_000, "header": 150}
_ELEMENT_LIMITS = {"actions": 25, "context": 10}


def _text_of(obj: Any, where: str, limit: int, problems: list[str], plain: bool = False) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        problems.append(f"{where}: not a text object")
    elif plain and obj["type"] != "plain_text":
        problems.append(f"{where}: must be plain_text")
    elif not isinstance(obj.get("text"), str) or not 1 <= len(obj["text"]) <= limit:
        problems.append(f"{where}: text must be 1-{limit} characters")


def _element_problems(element: Any, where: str, problems: list[str]) -> None:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        problems.append(f"{where}: not an element")
        return
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
        problems.append(f"{where}: action_id over 255 characters")
    if element["type"] == "button":
        _text_of(element.get("text"), f"{where}/text", 75, problems, plain=True)
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > 2_000):
            problems.append(f"{where}: value over 2000 characters")
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(f"{where}: unknown style")
        if (confirm := element.get("confirm")) is not None:
            _text_of(confirm.get("title"), f"{where}/confirm/title", 100, problems, plain=True)
            _text_of(confirm.get("text"), f"{where}/confirm/text", 300, problems)
            for button in ("confirm", "deny"):
                _text_of(confirm.get(button), f"{where}/confirm/{button}", 30, problems, True)
    elif element["type"] == "plain_text_input":
        initial = element.get("initial_value")
        if initial is not None and (not isinstance(initial, str) or len(initial) > 3_000):
            problems.append(f"{where}: initial_value over 3000 characters")
        if not 0 < int(element.get("max_length", 3_000)) <= 3_000:
            problems.append(f"{where}: max_length must be 1-3000")


def _view_problems(view: Any, kind: str) -> list[str]:
    """Why Slack would refuse `view` as a `kind` ("home" or "modal") view; [] if it would not."""
    if not isinstance(view, dict) or view.get("type") != kind:
        return [f"view: type must be {kind}"]
    problems: list[str] = []
    blocks = view.get("blocks")
    if not isinstance(blocks, list) or len(blocks) > 100:
        problems.append("view/blocks: no more than 100 items allowed")
        blocks = []
    if len(view.get("private_metadata") or "") > 3_000:
        problems.append("view/private_metadata: over 3000 characters")
    if len(view.get("callback_id") or "") > 255:
        problems.append("view/callback_id: over 255 characters")
    if kind == "modal":
        _text_of(view.get("title"), "view/title", 24, problems, plain=True)
        for button in ("submit", "close"):
            if view.get(button) is not None:
                _text_of(view[button], f"view/{button}", 24, problems, plain=True)
        if any(b.get("type") == "input" for b in blocks if isinstance(b, dict)):
            if view.get("submit") is None:
                problems.append("view/submit: required with input blocks")
    block_ids: set[str] = set()
    for n, block in enumerate(blocks):
        where = f"view/blocks/{n}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(f"{where}: not a block")
            continue
        if (block_id := block.get("block_id")) is not None:
            if not isinstance(block_id, str) or len(block_id) > 255 or block_id in block_ids:
                problems.append(f"{where}: block_id must be unique and at most 255 characters")
            block_ids.add(str(block_id))
        kind_ = block["type"]
        if kind_ in _TEXT_LIMITS and ("text" in block or kind_ == "header"):
            plain = kind_ == "header"
            _text_of(block.get("text"), f"{where}/text", _TEXT_LIMITS[kind_], problems, plain)
        if kind_ in ("section",) and "accessory" in block:
            _element_problems(block["accessory"], f"{where}/accessory", problems)
        if kind_ in _ELEMENT_LIMITS:
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= _ELEMENT_LIMITS[kind_]:
                problems.append(f"{where}/elements: 1-{_ELEMENT_LIMITS[kind_]} items")
                continue
            action_ids = [e.get("action_id") for e in elements if isinstance(e, dict)]
            if len([a for a in action_ids if a]) != len({a for a in action_ids if a}):
                problems.append(f"{where}: action_ids must be unique in a block")
            for i, element in enumerate(elements):
                if kind_ == "context":
                    _text_of(element, f"{where}/elements/{i}", 3_000, problems)
                else:
                    _element_problems(element, f"{where}/elements/{i}", problems)
        if kind_ == "input":
            _text_of(block.get("label"), f"{where}/label", 2_000, problems, plain=True)
            _element_problems(block.get("element"), f"{where}/element", problems)
    return problems


@dataclass(frozen=True)
class Call:
    """One Web API call: `args` merges query string, form and JSON body; `token` from either."""

    method: str
    args: JSON
    token: str | None
    # When it arrived (`time.perf_counter()`), for bench/; tests never assert a duration.
    at: float = field(default_factory=time.perf_counter, compare=False)


@dataclass
class Message:
    """A message the bot made: `body` is what it shows now (its text, the text of its last
    edit, or the Markdown streamed into it); `streaming` until its stream is stopped."""

    channel: str
    ts: str
    thread_ts: str | None
    body: str
    blocks: list[JSON] = field(default_factory=list)
    streamed: bool = False
    streaming: bool = False
    deleted: bool = False


@dataclass
class UploadedFile:
    """A file the bot uploaded (files.getUploadURLExternal, the upload, then
    files.completeUploadExternal): `data` once uploaded, `channel` once shared."""

    id: str
    name: str
    length: int
    data: bytes | None = None
    title: str = ""
    channel: str | None = None
    initial_comment: str = ""
    thread_ts: str | None = None


STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")
MARKDOWN_LIMIT = 12_000  # characters of markdown_text one call may carry


def streamed_text(args: JSON) -> str:
    """The Markdown one streaming call carries: `markdown_text`, or its markdown chunks."""
    chunks = args.get("chunks") or []
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    pieces = [c.get("text", "") for c in chunks if c.get("type") == "markdown_text"]
    return (args.get("markdown_text") or "") + "".join(pieces)


@dataclass(frozen=True)
class Delivered:
    """What the app answered to one HTTP-mode request; `seconds` is Slack's view of ack time
    (for bench/; tests never assert a duration)."""

    status: int
    body_text: str
    seconds: float


@dataclass(frozen=True)
class Acked:
    """The app's Socket Mode ack of one envelope (`payload` only if it sent one back)."""

    envelope_id: str
    payload: JSON | None
    seconds: float


class _Error(Exception):
    """Raised by a method handler to answer `{"ok": false, "error": ...}`."""


def _blocks(args: JSON) -> list[JSON]:
    blocks = args.get("blocks") or []
    return json.loads(blocks) if isinstance(blocks, str) else blocks  # a string when a form


def _stream_text(args: JSON) -> str:
    """A streaming call's Markdown, checked as Slack checks it."""
    chunks = args.get("chunks") or []
    if isinstance(chunks, str):
        chunks = json.loads(chunks)
    if not isinstance(chunks, list) or any(
        not isinstance(c, dict)
        or c.get("type") != "markdown_text"
        or not isinstance(c.get("text"), str)
        for c in chunks
    ):
        raise _Error("invalid_chunks")  # our bot sends text only
    texts = [args.get("markdown_text") or "", *(c["text"] for c in chunks)]
    if any(len(t) > MARKDOWN_LIMIT for t in texts):
        raise _Error("msg_too_long")
    return streamed_text(args)


class FakeSlack:
    """Slack's Web API, response URLs, HTTP-mode delivery and a Socket Mode endpoint."""

    def __init__(
        self,
        *,
        signing_secret: str = "test-signing-secret",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
        team: str = "Test Team",
        app_id: str = "A1",
        streaming: bool = False,
    ) -> None:
        self.signing_secret, self.app_id = signing_secret, app_id
        self.streaming = streaming
        self.messages: dict[str, Message] = {}  # the bot's messages, by ts
        self.statuses: dict[tuple[str, str], str] = {}  # (channel, thread_ts) -> status
        self.bot_user_id, self.bot_id, self.team_id, self.team = bot_user_id, bot_id, team_id, team
        self.calls: list[Call] = []
        self.users: dict[str, JSON] = {}
        self.replies: dict[tuple[str, str], list[JSON]] = {}  # (channel, thread_ts) -> messages
        self.responses: list[JSON] = []  # bodies posted to our response_urls
        self.port = 0
        self._ids = itertools.count(1)
        self._failures: defaultdict[str, deque[tuple[str, int]]] = defaultdict(deque)
        self._sockets: list[web.WebSocketResponse] = []
        self._socket_up = asyncio.Event()
        self._pending: dict[str, asyncio.Future[JSON]] = {}
        self._methods: dict[str, Callable[[JSON], JSON]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.postEphemeral": lambda a: {"message_ts": fresh_ts()},
            "chat.delete": self._delete,
            "chat.startStream": self._start_stream,
            "chat.appendStream": self._append_stream,
            "chat.stopStream": self._stop_stream,
            "users.info": self._users_info,
            "conversations.replies": self._replies,
            "assistant.threads.setStatus": self._set_status,
            "apps.connections.open": lambda a: {"url": self.socket_url},
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "conversations.open": self._conversations_open,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        # App Home and modals: every view published or opened, in order (`views`), the Home
        # tab each person sees now (`homes`), and what made Slack refuse one (`view_errors`).
        self.views: list[JSON] = []
        self.homes: dict[str, JSON] = {}
        self.view_errors: list[str] = []
        self._used_triggers: set[str] = set()
        self.dms: dict[str, str] = {}  # user -> their DM channel with the app
        self.files: dict[str, UploadedFile] = {}  # by file id

    @property
    def api_url(self) -> str:
        """`AsyncWebClient(base_url=...)`; the SDK appends the method name to it."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def socket_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/socket"

    def response_url(self) -> str:
        """A fresh response_url on this fake; whatever is posted to it lands in `responses`."""
        return f"http://127.0.0.1:{self.port}/response/{next(self._ids)}"

    def fail(
        self, method: str, *, error: str = "ratelimited", times: int = 1, status: int = 200
    ) -> None:
        """Answer the next `times` calls of `method` with `error` (429s carry `Retry-After: 0`)."""
        self._failures[method].extend([(error, status)] * times)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def bot_messages(self, channel: str, thread_ts: str | None = None) -> list[Message]:
        """The bot's messages in `channel` (in the thread `thread_ts`, if given), oldest
        first, deleted ones left out."""
        found = [
            m
            for m in self.messages.values()
            if m.channel == channel and not m.deleted and (thread_ts in (None, m.thread_ts))
        ]
        return sorted(found, key=lambda m: float(m.ts))

    def status_of(self, channel: str, thread_ts: str) -> str:
        """The assistant thread's status line now ("" when none shows)."""
        return self.statuses.get((channel, thread_ts), "")

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = WAIT,
        where: Callable[[Call], bool] | None = None,
    ) -> list[Call]:
        """Poll until `count` calls of `method` (those `where` accepts, if given) arrived;
        bolt answers Slack before it acts. A sentinel: `where=lambda c: c.args["channel"]
        == "D9"` waits for the answer to a later message, after which the counts are final."""

        def found() -> list[Call]:
            calls = self.calls_to(method)
            return calls if where is None else [c for c in calls if where(c)]

        return await self._poll(found, count, timeout, method)

    async def wait_for_responses(self, count: int = 1, timeout: float = WAIT) -> list[JSON]:
        return await self._poll(lambda: self.responses, count, timeout, "response_url posts")

    async def _poll(self, get: Callable[[], list], count: int, timeout: float, what: str) -> list:
        deadline = time.monotonic() + timeout
        while len(found := get()) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} {what} within {timeout}s")
            await asyncio.sleep(0.005)
        return list(found)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)  # the SDK GETs e.g. users.info
        app.router.add_post("/response/{n}", self._response)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        await self._http.close()
        await self._runner.cleanup()

    # -- Web API ---------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: JSON = dict(request.query)
        if request.can_read_body:
            is_json = request.content_type == "application/json"
            args.update(await (request.json() if is_json else request.post()))
        field_token, header = args.pop("token", None), request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else field_token
        self.calls.append(Call(method, args, token))
        if self._failures[method]:
            error, status = self._failures[method].popleft()
            headers = {"Retry-After": "0"} if status == 429 else None
            return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
        try:
            if method not in self._methods or (method in STREAM_METHODS and not self.streaming):
                raise _Error("unknown_method")
            if not token:
                raise _Error("not_authed")
            if (method == "apps.connections.open") != token.startswith("xapp-"):
                raise _Error("not_allowed_token_type")
            return web.json_response({"ok": True, **self._methods[method](args)})
        except _Error as e:
            return web.json_response({"ok": False, "error": str(e)})
        except KeyError as e:  # a required argument is missing
            return web.json_response({"ok": False, "error": "invalid_arguments", "arg": str(e)})

    def _auth_test(self, args: JSON) -> JSON:
        url = "https://test.slack.com/"
        ids = {"team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id}
        return {"url": url, "team": self.team, "user": "bot", **ids, "is_enterprise_install": False}

    def _post_message(self, args: JSON) -> JSON:
        if not args.get("channel"):
            raise _Error("channel_not_found")
        if not any(args.get(k) for k in ("text", "blocks", "attachments", "markdown_text")):
            raise _Error("no_text")
        ts = fresh_ts()
        text = args.get("text") or args.get("markdown_text") or ""
        msg = {"type": "message", "text": text, "user": self.bot_user_id}
        msg |= {"bot_id": self.bot_id, "ts": ts}
        if args.get("thread_ts"):
            msg["thread_ts"] = args["thread_ts"]
        if blocks := _blocks(args):
            msg["blocks"] = blocks
        self._keep(Message(args["channel"], ts, args.get("thread_ts") or None, text, blocks))
        return {"channel": args["channel"], "ts": ts, "message": msg}

    def _keep(self, message: Message) -> None:
        """Record a new bot message; a reply in a thread clears that thread's status."""
        self.messages[message.ts] = message
        if message.thread_ts:
            self.statuses.pop((message.channel, message.thread_ts), None)

    def _update(self, args: JSON) -> JSON:
        """Lenient like the fake always was: a ts it never issued is taken as a message made
        before the test began (tests of a dead process's placeholder rely on that)."""
        channel, ts = args["channel"], args["ts"]
        if not any(args.get(k) for k in ("text", "blocks", "attachments", "markdown_text")):
            raise _Error("no_text")
        message = self.messages.get(ts) or Message(channel, ts, None, "")
        if message.channel != channel:
            raise _Error("message_not_found")
        if message.deleted:
            raise _Error("message_not_found")
        message.body = args.get("text") or args.get("markdown_text") or ""
        message.blocks = _blocks(args)
        self.messages[ts] = message
        return {"channel": channel, "ts": ts, "text": message.body}

    def _delete(self, args: JSON) -> JSON:
        channel, ts = args["channel"], args["ts"]
        message = self.messages.get(ts)
        if message is not None:
            if message.channel != channel or message.deleted:
                raise _Error("message_not_found")
            message.deleted = True
        return {"channel": channel, "ts": ts}

    def _set_status(self, args: JSON) -> JSON:
        key = (args["channel_id"], args["thread_ts"])
        self.statuses[key] = args["status"]
        if not args["status"]:
            del self.statuses[key]
        return {}

    def _start_stream(self, args: JSON) -> JSON:
        channel, thread_ts = args["channel"], args.get("thread_ts")
        if not channel:
            raise _Error("channel_not_found")
        if not thread_ts:
            raise _Error("invalid_arguments")  # streamed messages are replies to a request
        for recipient in ("recipient_user_id", "recipient_team_id"):
            if not args.get(recipient):
                raise _Error(f"missing_{recipient}")
        ts = fresh_ts()
        text = _stream_text(args)
        self._keep(Message(channel, ts, thread_ts, text, streamed=True, streaming=True))
        return {"channel": channel, "ts": ts}

    def _streaming(self, args: JSON) -> Message:
        message = self.messages.get(args["ts"])
        if message is None or message.deleted or message.channel != args["channel"]:
            raise _Error("message_not_found")
        if not message.streaming:
            raise _Error("message_not_in_streaming_state")
        return message

    def _append_stream(self, args: JSON) -> JSON:
        message = self._streaming(args)
        text = _stream_text(args)
        if not text:
            raise _Error("invalid_arguments")  # markdown_text is required
        message.body += text
        return {"channel": message.channel, "ts": message.ts}

    def _stop_stream(self, args: JSON) -> JSON:
        message = self._streaming(args)
        message.body += _stream_text(args)
        message.blocks = _blocks(args)
        message.streaming = False
        return {"channel": message.channel, "ts": message.ts, "message": {"text": message.body}}

    def _users_info(self, args: JSON) -> JSON:
        if args.get("user") not in self.users:
            raise _Error("user_not_found")
        return {"user": self.users[args["user"]]}

    def _replies(self, args: JSON) -> JSON:
        messages = self.replies.get((args["channel"], args["ts"]), [])
        return {"messages": list(messages), "has_more": False}

    async def _response(self, request: web.Request) -> web.Response:
        self.responses.append(await request.json())
        return web.json_response({"ok": True})

    # -- App Home, modals, DMs and files ---------------------------------------------------

    def home_of(self, user: str) -> JSON:
        """The Home tab `user` sees now (KeyError if none was published for them)."""
        return self.homes[user]

    def _view(self, args: JSON, kind: str) -> JSON:
        view = args["view"]
        if isinstance(view, str):  # a form field
            view = json.loads(view)
        problems = _view_problems(view, kind)
        if problems:
            self.view_errors.extend(problems)
            raise _Error("invalid_arguments")
        stored = dict(view) | {"id": f"V{next(self._ids):08d}", "team_id": self.team_id}
        stored |= {"app_id": self.app_id, "bot_id": self.bot_id, "hash": uuid.uuid4().hex}
        stored |= {"state": {"values": {}}, "private_metadata": view.get("private_metadata", "")}
        stored |= {"callback_id": view.get("callback_id", "")}
        self.views.append(stored)
        return stored

    def _views_publish(self, args: JSON) -> JSON:
        user = args["user_id"]
        if self.users and user not in self.users:
            raise _Error("user_not_found")
        view = self._view(args, "home")
        self.homes[user] = view
        return {"view": view}

    def _views_open(self, args: JSON) -> JSON:
        trigger = args.get("trigger_id") or ""
        if not _TRIGGER.fullmatch(trigger):
            raise _Error("invalid_trigger_id")
        if trigger in self._used_triggers:
            raise _Error("exchanged_trigger_id")  # a trigger opens one view
        view = self._view(args, "modal")
        self._used_triggers.add(trigger)
        return {"view": view | {"root_view_id": view["id"], "previous_view_id": None}}

    def _conversations_open(self, args: JSON) -> JSON:
        users = [u for u in (args.get("users") or "").split(",") if u]
        if args.get("channel"):
            return {"channel": {"id": args["channel"]}}
        if not users:
            raise _Error("users_list_not_supplied")
        if len(users) > 1:
            raise _Error("not_supported")  # our fake knows only one-to-one DMs
        if self.users and users[0] not in self.users:
            raise _Error("user_not_found")
        already = users[0] in self.dms
        channel = self.dms.setdefault(users[0], f"D{next(self._ids):08d}")
        return {"channel": {"id": channel}, "no_op": already, "already_open": already}

    def _get_upload_url(self, args: JSON) -> JSON:
        if not args.get("filename"):
            raise _Error("invalid_arguments")
        try:
            length = int(args["length"])
        except (TypeError, ValueError):
            raise _Error("invalid_arguments") from None
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = UploadedFile(file_id, args["filename"], length)
        return {"upload_url": f"http://127.0.0.1:{self.port}/upload/{file_id}", "file_id": file_id}

    async def _upload(self, request: web.Request) -> web.Response:
        """The upload URL: the file's bytes, as the body of a POST."""
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            return web.Response(status=404, text="not found")
        data = await request.read()
        if len(data) != found.length:
            return web.Response(status=400, text="length mismatch")
        found.data = data
        return web.Response(text=f"OK - {len(data)}")

    def _complete_upload(self, args: JSON) -> JSON:
        files = args["files"]
        files = json.loads(files) if isinstance(files, str) else files
        if not isinstance(files, list) or not files:
            raise _Error("invalid_arguments")
        shared = []
        for entry in files:
            found = self.files.get(entry.get("id") if isinstance(entry, dict) else None)
            if found is None or found.data is None:
                raise _Error("file_not_found")  # never uploaded
            found.title = entry.get("title") or found.name
            found.channel = args.get("channel_id") or None
            found.initial_comment = args.get("initial_comment") or ""
            found.thread_ts = args.get("thread_ts") or None
            shared.append({"id": found.id, "name": found.name, "title": found.title})
        return {"files": shared}

    # -- HTTP mode: Slack -> app -----------------------------------------------------------

    def event_payload(
        self, event: JSON, *, team_id: str | None = None, event_id: str | None = None
    ) -> JSON:
        """The `event_callback` envelope: HTTP mode's body, Socket Mode's `events_api` payload."""
        team_id = team_id or self.team_id
        auth = {"enterprise_id": None, "team_id": team_id, "user_id": self.bot_user_id}
        return {
            "token": "legacy-verification-token",
            "team_id": team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(float(event.get("event_ts", time.time()))),
            "authorizations": [auth | {"is_bot": True, "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }

    def command_payload(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str,
        team_id: str | None = None,
        channel_id: str = "C1",
        response_url: str | None = None,
    ) -> dict[str, str]:
        """A slash command: HTTP mode's form fields and Socket Mode's `slash_commands` payload."""
        return {
            "token": "legacy-verification-token",
            "team_id": team_id or self.team_id,
            "team_domain": "test",
            "channel_id": channel_id,
            "channel_name": "directmessage" if channel_id.startswith("D") else "general",
            "user_id": user_id,
            "user_name": user_id.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url or self.response_url(),
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex}",
        }

    def block_actions_payload(
        self,
        user_id: str,
        action_id: str,
        value: str = "",
        *,
        channel_id: str = "C1",
        message_ts: str | None = None,
        block_id: str = "b1",
        team_id: str | None = None,
        action_type: str = "button",
    ) -> JSON:
        """A button click on a bot message, as `block_actions` (form field or `interactive`).
        `action_type="feedback_buttons"`: a click on one of a feedback_buttons element's two
        buttons, which Slack reports with that button's `value` and `text`."""
        team_id, message_ts = team_id or self.team_id, message_ts or fresh_ts()
        bot_message = {"type": "message", "ts": message_ts, "user": self.bot_user_id}
        action = {"type": action_type, "action_id": action_id, "block_id": block_id, "value": value}
        if action_type == "feedback_buttons":
            action["text"] = {"type": "plain_text", "text": "feedback", "emoji": True}
        return {
            "type": "block_actions",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id},
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex}",
            "team": {"id": team_id, "domain": "test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": "general"},
            "message": bot_message | {"bot_id": self.bot_id, "text": ""},
            "response_url": self.response_url(),
            "actions": [action | {"action_ts": fresh_ts()}],
        }

    def _interaction_user(self, user_id: str, team_id: str) -> JSON:
        name = user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": team_id}

    def view_action_payload(
        self, user_id: str, view: JSON, block_id: str, action_id: str, *, team_id: str | None = None
    ) -> JSON:
        """A click on a button of a published view (e.g. the Home tab), as `block_actions`:
        Slack reports the button's own value and the whole view; there is no channel, no
        message and no response_url. A button with a `confirm` dialog is only reported once
        the person confirmed it."""
        team_id = team_id or self.team_id
        (block,) = [b for b in view["blocks"] if b.get("block_id") == block_id]
        elements = [block["accessory"]] if "accessory" in block else block.get("elements", [])
        (element,) = [e for e in elements if e.get("action_id") == action_id]
        action = {"type": element["type"], "action_id": action_id, "block_id": block_id}
        action |= {"text": element.get("text"), "action_ts": fresh_ts()}
        if "value" in element:
            action["value"] = element["value"]
        if "style" in element:
            action["style"] = element["style"]
        return {
            "type": "block_actions",
            "user": self._interaction_user(user_id, team_id),
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "container": {"type": "view", "view_id": view["id"]},
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex}",
            "team": {"id": team_id, "domain": "test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view,
            "actions": [action],
        }

    def view_submission_payload(
        self,
        user_id: str,
        view: JSON,
        values: dict[str, dict[str, str]],
        *,
        team_id: str | None = None,
    ) -> JSON:
        """A modal's submit, as `view_submission`: the view as opened, its `state.values`
        (block_id -> action_id -> the input's value) filled in."""
        team_id = team_id or self.team_id
        types = {
            (b.get("block_id"), b["element"].get("action_id")): b["element"]["type"]
            for b in view["blocks"]
            if b.get("type") == "input"
        }
        state = {
            block: {
                action: {"type": types[(block, action)], "value": value}
                for action, value in actions.items()
            }
            for block, actions in values.items()
        }
        return {
            "type": "view_submission",
            "team": {"id": team_id, "domain": "test"},
            "user": self._interaction_user(user_id, team_id),
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "trigger_id": f"{next(self._ids)}.{uuid.uuid4().hex}",
            "view": view | {"state": {"values": state}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    async def post_event(
        self,
        app_url: str,
        event: JSON,
        *,
        team_id: str | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        signing_secret: str | None = None,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> Delivered:
        """POST `event` wrapped in `event_callback`, signed, as the Events API does."""
        body = json.dumps(self.event_payload(event, team_id=team_id, event_id=event_id))
        retry = {}
        if retry_num is not None:
            retry = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": retry_reason}
        return await self._deliver(
            app_url, body, "application/json", signing_secret, bad_signature, timestamp, retry
        )

    async def post_command(
        self,
        app_url: str,
        command: str,
        text: str = "",
        *,
        user_id: str,
        team_id: str | None = None,
        channel_id: str = "C1",
        response_url: str | None = None,
        signing_secret: str | None = None,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> Delivered:
        """POST a slash command form-encoded, signed, with a fresh response_url on this fake."""
        fields = self.command_payload(
            command, text, user_id=user_id, team_id=team_id, channel_id=channel_id,
            response_url=response_url,
        )  # fmt: skip
        form = "application/x-www-form-urlencoded"
        return await self._deliver(
            app_url, urlencode(fields), form, signing_secret, bad_signature, timestamp
        )

    async def post_interaction(
        self,
        app_url: str,
        payload: JSON,
        *,
        signing_secret: str | None = None,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> Delivered:
        """POST an interaction as Slack does: one form field `payload` holding JSON."""
        body = urlencode({"payload": json.dumps(payload)})
        form = "application/x-www-form-urlencoded"
        return await self._deliver(app_url, body, form, signing_secret, bad_signature, timestamp)

    async def post_raw(
        self,
        app_url: str,
        body: str,
        content_type: str = "application/json",
        *,
        signing_secret: str | None = None,
        bad_signature: bool = False,
        timestamp: int | None = None,
    ) -> Delivered:
        """POST any body, signed like the others: for bodies Slack itself would never send."""
        return await self._deliver(
            app_url, body, content_type, signing_secret, bad_signature, timestamp
        )

    async def _deliver(
        self,
        url: str,
        body: str,
        content_type: str,
        secret: str | None,
        bad_signature: bool,
        timestamp: int | None,
        extra_headers: dict[str, str] | None = None,
    ) -> Delivered:
        """Sign `body` like Slack: v0=HMAC-SHA256(secret, "v0:{ts}:{body}"), then POST it."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        secret = (secret or self.signing_secret) + ("-wrong" if bad_signature else "")
        digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts}
        headers |= {"X-Slack-Signature": f"v0={digest}", **(extra_headers or {})}
        start = time.perf_counter()
        async with self._http.post(url, data=body.encode(), headers=headers) as resp:
            text = await resp.text()
        return Delivered(resp.status, text, time.perf_counter() - start)

    # -- Socket Mode: Slack -> app ---------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # answers the SDK's "sdk-ping-pong" pings itself
        await ws.prepare(request)
        self._sockets.append(ws)
        self._socket_up.set()
        debug = {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 18060}
        await ws.send_json(
            {"type": "hello", "num_connections": len(self._sockets), "debug_info": debug}
            | {"connection_info": {"app_id": self.app_id}}
        )
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    ack = json.loads(msg.data)
                    future = self._pending.get(ack.get("envelope_id", ""))
                    if future is not None and not future.done():
                        future.set_result(ack)
        finally:
            self._sockets.remove(ws)
            if not self._sockets:
                self._socket_up.clear()
        return ws

    async def connected(self, timeout: float = WAIT) -> None:
        """Wait until an app holds a Socket Mode connection."""
        try:
            await asyncio.wait_for(self._socket_up.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"no Socket Mode client connected within {timeout}s") from None

    async def push(
        self,
        type_: str,
        payload: JSON,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = WAIT,
    ) -> Acked:
        """Send one envelope to the newest connection and wait for the app's ack of it."""
        await self.connected(timeout)
        envelope_id = str(uuid.uuid4())
        accepts = type_ == "slash_commands" or payload.get("type") in (
            "view_submission",
            "block_suggestion",
        )
        envelope = {"envelope_id": envelope_id, "type": type_, "payload": payload}
        envelope["accepts_response_payload"] = accepts
        if type_ == "events_api":  # only Events API envelopes carry retry fields
            envelope |= {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        self._pending[envelope_id] = future = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        try:
            await self._sockets[-1].send_json(envelope)
            ack = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"no ack for {type_} {envelope_id} within {timeout}s") from None
        finally:
            del self._pending[envelope_id]
        return Acked(envelope_id, ack.get("payload"), time.perf_counter() - start)
