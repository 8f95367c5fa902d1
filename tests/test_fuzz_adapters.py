"""Fuzzing the adapters' event parsing: random and malformed payloads, through the real path.

Slack payloads are signed HTTP requests into the adapter's bolt app (bolt's parsing and
signature check, then our middleware and listeners); Discord payloads are gateway events
from the fake Discord into the real discord.py client running the adapter. Whatever
arrives, no exception may escape our handlers, and a normal mention afterwards must still
be answered.

Escaping means any ERROR log record (Slack: our bolt error handler's "slack: unhandled
error", aiohttp's "Error handling request" behind a 500; Discord: "Ignoring exception in
on_message", a view's or the command tree's error log) or an exception out of the command
tree's error handler. Our own catch-alls ("answering ... failed", "/ask failed", "command
failed") are fine when what they caught is the platform saying no (a Web API or REST error,
discord.py refusing a command's arguments), not a Python error from reading the payload.

Bugs found are in KNOWN_BUGS, matched by signature (the root exception's class and the
innermost frame in our code, or in the library for a library's bug), so the fuzzing still
fails on anything new; each has a minimal payload below, run as a strict xfail. Once one is
fixed its xfail reports XPASS: delete its KNOWN_BUGS entry and the `xfail` on its case.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import discord
import pytest
from aiohttp import web
from discord import app_commands
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.errors import SlackApiError

from bots.discord import DiscordAdapter
from bots.slack import SlackAdapter
from engine.bot import MemoryBot
from engine.settings import Settings
from tests.fakes.discord import (
    ADMIN_ID,
    APPLICATION_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    MEMBER_ID,
    Channel,
    FakeDiscord,
    default_guilds,
)
from tests.fakes.slack import Delivered, FakeSlack, app_mention
from tests.fakes.waits import WAIT

JSON = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("slack_bolt/", "slack_sdk/", "discord/")

FUZZ = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run, so CI is reproducible
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


# -- what escaped --------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """One exception that escaped (or a Python error our catch-all had to swallow)."""

    message: str
    error: str  # the root cause's class name
    where: str  # "bots/slack.py:_on_mention": innermost frame of ours, else of a library
    trace: str

    @classmethod
    def of(cls, message: str, error: BaseException | None) -> Failure:
        if error is None:
            return cls(message, "-", "-", "")
        error = _root(error)
        frames = [_frame(f) for f in traceback.extract_tb(error.__traceback__)]
        where = next(
            (
                f
                for prefixes in (("bots/",), LIBRARIES)
                for f in reversed(frames)
                if f.startswith(prefixes)
            ),
            frames[-1] if frames else "-",
        )
        return cls(message, type(error).__name__, where, f"{error!r} at " + " <- ".join(frames))

    def __str__(self) -> str:
        return f"{self.message!r}: {self.error} in {self.where}\n    {self.trace[:1500]}"


def _frame(frame: traceback.FrameSummary) -> str:
    path = Path(frame.filename)
    if "site-packages" in path.parts:
        name = "/".join(path.parts[path.parts.index("site-packages") + 1 :])
    elif path.is_relative_to(ROOT):
        name = path.relative_to(ROOT).as_posix()
    else:
        name = path.name
    return f"{name}:{frame.name}"


# Our deliberate catch-alls: they log what they caught and answer with an apology.
CATCH_ALLS = ("slack: answering in", "discord: answering in", "discord: /ask failed")
CATCH_ALLS += ("discord: command failed",)
PLATFORM_SAID_NO = (SlackApiError, discord.HTTPException, app_commands.AppCommandError)


def _root(error: BaseException) -> BaseException:
    """What was raised first: CommandInvokeError -> what the command raised, and so on."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class Captured(logging.Handler):
    """Every logger's records, for the duration of one test; `take` judges the ERRORs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[Failure]:
        records, self.records = self.records, []
        found = []
        for record in records:
            if record.levelno < logging.ERROR:
                continue
            error = record.exc_info[1] if record.exc_info else None
            message = record.getMessage()
            if (
                error is not None
                and message.startswith(CATCH_ALLS)
                and isinstance(_root(error), PLATFORM_SAID_NO)
            ):
                continue  # handled as designed: the platform refused, the user got an apology
            found.append(Failure.of(f"{record.name}: {message[:200]}", error))
        return found


@contextmanager
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# -- bugs found ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bug:
    id: str
    errors: tuple[str, ...]
    where: tuple[str, ...]  # fnmatch patterns over Failure.where
    reason: str

    def matches(self, failure: Failure) -> bool:
        return failure.error in self.errors and any(fnmatch(failure.where, w) for w in self.where)


# Bugs this fuzzing found, all fixed since: Slack events with missing or mistyped fields,
# Web API errors and malformed erase-button values escaping the listeners, bolt's 500s on
# unparsable bodies, and Discord apologies that failed the way the answer did. Their
# minimal payloads stay below as regression cases. A new finding goes here, with a strict
# xfail on its minimal case, until it is fixed.
KNOWN_BUGS: list[Bug] = []
BUGS = {bug.id: bug for bug in KNOWN_BUGS}


def known(bug_id: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=BUGS[bug_id].reason)


def unexplained(failures: list[Failure]) -> list[Failure]:
    return [f for f in failures if not any(bug.matches(f) for bug in KNOWN_BUGS)]


def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any]) -> Any:
    """Hypothesis drives examples from a worker thread; each runs on the test's loop,
    where the harness lives."""
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=2 * WAIT)


# -- shared strategies ---------------------------------------------------------------------

DELETE = object()  # a damage that removes the key
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
HUGE = st.builds(
    lambda unit, times: unit * times,
    st.sampled_from(["x", "é", "🙂", "word ", "\u200b", "<@UBOT> ", "\n\n", "```"]),
    st.integers(2_000, 40_000),
)


def texts(alphabet: st.SearchStrategy[str], mention: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet, max_size=200),
        st.text(alphabet, max_size=120).map(lambda t: f"{mention} {t}"),
        st.sampled_from(
            [
                "",
                " ",
                mention,
                f"{mention}{mention}",
                "remember: my name is Bob",
                f"{mention} remember: I like tea",
                "@everyone <!channel> <@&1> hi",
                "**bold** _it_ ~~s~~ `code` ```py\nx\n``` [l](https://x.io)",
                "\x00\x01\x1b[31m\r\n\t",
                "\u202eevil\u202c \ufeff \U0010ffff",
            ]
        ),
        HUGE,
    )


def damaged(base: st.SearchStrategy[JSON], keys: list[str]) -> st.SearchStrategy[JSON]:
    """`base` with up to three of `keys` removed or set to random JSON; no damage first, so
    examples shrink toward plausible payloads."""
    damage = st.lists(st.tuples(st.sampled_from(keys), st.just(DELETE) | JUNK), max_size=3)

    def apply(payload: JSON, changes: list[tuple[str, Any]]) -> JSON:
        payload = dict(payload)
        for key, value in changes:
            if value is DELETE:
                payload.pop(key, None)
            else:
                payload[key] = value
        return payload

    return st.builds(apply, base, damage)


def optional(key: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[JSON]:
    return st.none().map(lambda _: {}) | strategy.map(lambda v: {key: v})


# -- Slack ---------------------------------------------------------------------------------

SECRET = "fuzz-signing-secret"
SLACK_TEXT = texts(st.characters(exclude_categories=()), "<@UBOT>")  # lone surrogates too
SLACK_USERS = st.sampled_from(["U1", "U2", "UADMIN", "UBOT", "W0123ABC"]) | st.text(max_size=12)
SLACK_CHANNELS = st.sampled_from(["C1", "C2", "D1", "G1"]) | st.text(max_size=12)
SLACK_TS = st.one_of(
    st.builds(lambda s, u: f"{s}.{u:06d}", st.integers(0, 2**33), st.integers(0, 999_999)),
    st.sampled_from(["", "0", "1.2.3", "-1", "1e9", "abc", " 1700000000.000100"]),
)
SUBTYPES = st.sampled_from(
    "file_share thread_broadcast message_changed message_deleted bot_message channel_join "
    "me_message message_replied huddle_thread".split()
) | st.text(max_size=10)
SLACK_FILES = st.lists(
    st.fixed_dictionaries(
        {"id": st.text(max_size=8)},
        optional={"name": st.text(), "mimetype": st.text(max_size=20), "size": st.integers()},
    ),
    max_size=3,
)


@st.composite
def slack_events(draw: st.DrawFn) -> JSON:
    kind = draw(st.sampled_from(["app_mention", "message"]))
    ts = draw(SLACK_TS)
    event: JSON = {"type": kind, "user": draw(SLACK_USERS), "text": draw(SLACK_TEXT), "ts": ts}
    event |= {"channel": draw(SLACK_CHANNELS), "team": draw(st.sampled_from(["T1", "T2"]))}
    event |= {"event_ts": ts, "blocks": draw(st.just([]) | st.lists(JUNK, max_size=3))}
    event |= draw(optional("thread_ts", SLACK_TS))
    event |= draw(optional("client_msg_id", st.uuids().map(str)))
    if kind == "message":
        channel_type = st.sampled_from(["im", "channel", "group", "mpim", "app_home"])
        event |= {"channel_type": draw(channel_type)}
        event |= draw(optional("subtype", SUBTYPES))
        event |= draw(optional("bot_id", st.sampled_from(["B1", "BBOT"])))
        event |= draw(optional("files", SLACK_FILES))
    keys = [*event, "subtype", "bot_id", "files", "thread_ts", "channel_type", "edited"]
    keys += ["attachments", "hidden", "bot_profile", "parent_user_id", "app_id"]
    return draw(damaged(st.just(event), sorted(set(keys) - {"type"})))


@st.composite
def slack_envelopes(draw: st.DrawFn) -> JSON:
    """An Events API `event_callback` (the event id is filled in fresh on delivery)."""
    auth = {"enterprise_id": None, "team_id": "T1", "user_id": "UBOT", "is_bot": True}
    envelope = {
        "token": "legacy-verification-token",
        "team_id": draw(st.sampled_from(["T1", "T2"])),
        "api_app_id": "A1",
        "event": draw(slack_events()),
        "type": "event_callback",
        "event_id": None,
        "event_time": draw(st.integers(0, 2**33)),
        "authorizations": [auth | {"is_enterprise_install": False}],
        "is_ext_shared_channel": draw(st.booleans()),
    }
    keys = ["token", "team_id", "api_app_id", "event_id", "event_time", "is_ext_shared_channel"]
    keys += ["event_context", "retry_attempt"]
    return draw(damaged(st.just(envelope), keys))


BOLT_TYPES = st.sampled_from(
    "event_callback url_verification block_actions view_submission shortcut message_action "
    "block_suggestion app_rate_limited interactive_message".split()
)
BOLT_KEYS = st.sampled_from(
    "type event event_id team_id team user actions channel view authorizations enterprise "
    "enterprise_id is_enterprise_install challenge command callback_id response_url trigger_id "
    "token container".split()
)
RANDOM_JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(BOLT_KEYS | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=12,
)


@st.composite
def slack_bodies(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(body, content type, signed?): any JSON, JSON objects in bolt's vocabulary, forms,
    and bytes that are not JSON at all."""
    form, as_json = "application/x-www-form-urlencoded", "application/json"
    kind = draw(st.sampled_from(["object", "json", "form", "payload", "garbage"]))
    if kind == "object":
        obj = draw(st.dictionaries(BOLT_KEYS, RANDOM_JSON, max_size=6))
        obj.setdefault("type", draw(BOLT_TYPES | RANDOM_JSON))
        body, content_type = json.dumps(obj), as_json
    elif kind == "json":
        body, content_type = json.dumps(draw(RANDOM_JSON)), as_json
    elif kind == "form":
        fields = draw(st.dictionaries(BOLT_KEYS | st.text(max_size=8), st.text(max_size=40)))
        body, content_type = urlencode(fields), form
    elif kind == "payload":
        payload = draw(st.text(max_size=80) | RANDOM_JSON.map(json.dumps))
        body, content_type = urlencode({"payload": payload}), form
    else:
        body = draw(st.text(max_size=200))
        content_type = draw(st.sampled_from([as_json, form, "text/plain", ""]))
    return body, content_type, draw(st.booleans())


@st.composite
def slash_commands(draw: st.DrawFn) -> dict[str, str]:
    """A slash command's form fields: our two commands (and strangers), random text."""
    command = draw(st.sampled_from(["/memories", "/forget"]) | st.text(max_size=10))
    forget_text = st.sampled_from(["", "<@U1>", "<@U1|bob>", "<@UADMIN>", "<@W0X|x> more"])
    forget_text |= SLACK_USERS.map(lambda u: f"<@{u}>")
    text = draw(forget_text | SLACK_TEXT)
    fields = {
        "token": "legacy-verification-token",
        "team_id": draw(st.sampled_from(["T1", "T2"]) | st.text(max_size=8)),
        "team_domain": "test",
        "channel_id": draw(SLACK_CHANNELS),
        "channel_name": "general",
        "user_id": draw(SLACK_USERS),
        "user_name": draw(st.text(max_size=10)),
        "command": command,
        "text": text,
        "api_app_id": "A1",
        "is_enterprise_install": draw(st.sampled_from(["false", "true", "", "x"])),
        "trigger_id": draw(st.text(max_size=20)),
    }
    removable = ["token", "team_domain", "channel_name", "user_name", "text", "api_app_id"]
    removable += ["is_enterprise_install", "trigger_id", "channel_id"]
    gone = draw(st.lists(st.sampled_from(removable), max_size=3))
    return {k: v for k, v in fields.items() if k not in gone}


@st.composite
def block_actions(draw: st.DrawFn) -> tuple[str, str, str, JSON]:
    """(clicker, action_id, value, damage to the payload) for a button click."""
    clicker = draw(SLACK_USERS)
    action_id = draw(st.sampled_from(["forget_confirm", "forget_cancel"]) | st.text(max_size=10))
    ours = st.fixed_dictionaries(
        {"team": st.sampled_from(["T1", "T2"]), "target": SLACK_USERS}
    ).map(json.dumps)
    value = draw(ours | st.text(max_size=60) | JUNK.map(json.dumps))
    damage = draw(
        st.dictionaries(
            st.sampled_from(["team", "channel", "container", "message", "enterprise", "token"]),
            st.just(DELETE) | JUNK,
            max_size=2,
        )
    )
    return clicker, action_id, value, damage


@dataclass
class SlackRig:
    slack: FakeSlack
    bot: MemoryBot
    adapter: SlackAdapter
    url: str
    logs: Captured
    ids: Iterator[int] = field(default_factory=itertools.count)

    async def post(
        self, body: Any, content_type: str = "application/json", *, signed: bool = True
    ) -> Delivered:
        text = body if isinstance(body, str) else json.dumps(body)
        delivered = await self.slack.post_raw(
            self.url, text, content_type, bad_signature=not signed
        )
        await self.settle()
        return delivered

    async def event(self, envelope: JSON) -> Delivered:
        if envelope.get("event_id", 0) is None:
            envelope = envelope | {"event_id": f"EvFuzz{next(self.ids):06d}"}
        return await self.post(envelope)

    async def command(self, fields: dict[str, str]) -> Delivered:
        fields = fields | {"response_url": self.slack.response_url()}
        return await self.post(urlencode(fields), "application/x-www-form-urlencoded")

    async def click(self, clicker: str, action_id: str, value: str, damage: JSON) -> Delivered:
        payload = self.slack.block_actions_payload(clicker, action_id, value)
        for key, change in damage.items():
            if change is DELETE:
                payload.pop(key, None)
            else:
                payload[key] = change
        form = urlencode({"payload": json.dumps(payload)})
        return await self.post(form, "application/x-www-form-urlencoded")

    async def settle(self) -> None:
        """Wait for the listeners bolt started after acknowledging (and their error handler)."""
        for _ in range(100):
            running = [
                t
                for t in asyncio.all_tasks()
                if getattr(t.get_coro(), "__qualname__", "").endswith(
                    "run_ack_function_asynchronously"
                )
            ]
            if not running:
                return
            await asyncio.wait(running, timeout=WAIT)
        raise AssertionError("bolt's listeners never settled")

    def check(
        self,
        delivered: Delivered,
        *,
        acked: bool = False,
        signed: bool = True,
        tolerate: bool = True,
    ) -> None:
        """Nothing escaped (beyond KNOWN_BUGS if `tolerate`); no 500 without a logged cause;
        `acked`: one of our listeners took it, so it must have been acknowledged."""
        failures = self.logs.take()
        bad = unexplained(failures) if tolerate else failures
        assert not bad, "escaped the Slack adapter:\n" + "\n".join(map(str, bad))
        if delivered.status >= 500:
            assert failures, f"HTTP {delivered.status} with nothing logged: {delivered}"
        if acked and not failures:
            assert delivered.status == 200, f"not acknowledged (Slack retries): {delivered}"
        if not signed:
            assert delivered.status >= 400 or not delivered.body_text, delivered

    async def still_answers(self) -> None:
        before = len(self.slack.calls_to("chat.update"))
        mention = app_mention("U1", "<@UBOT> Are you still there?", channel="C1")
        delivered = await self.slack.post_event(self.url, mention)
        assert delivered.status == 200
        updates = await self.slack.wait_for("chat.update", count=before + 1)
        assert updates[-1].args["text"].startswith("[offline]")


@pytest.fixture
async def slack_rig(tmp_path: Path, local_embeddings) -> AsyncIterator[SlackRig]:
    async with FakeSlack(signing_secret=SECRET) as slack:
        for user, admin in (("U1", False), ("U2", False), ("UADMIN", True)):
            slack.users[user] = {"id": user, "is_admin": admin, "is_owner": False, "team_id": "T1"}
        settings_ = Settings(
            data_dir=tmp_path,
            llm_provider="offline",
            slack_bot_token="xoxb-test",
            slack_signing_secret=SECRET,
            slack_api_url=slack.api_url,
            audit_log_path=tmp_path / "audit.jsonl",
        )
        async with MemoryBot.open(settings_, embeddings=local_embeddings) as bot:
            adapter = SlackAdapter(bot, settings_)
            runner = web.AppRunner(adapter.web_app())
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
            with captured_logs() as logs:
                try:
                    yield SlackRig(slack, bot, adapter, url, logs)
                finally:
                    await runner.cleanup()
                    await adapter.aclose()


async def test_slack_events_fuzz(slack_rig: SlackRig) -> None:
    """event_callback envelopes carrying message / app_mention events with fields missing,
    of the wrong type, huge, odd unicode, random subtypes, bot ids, thread_ts, files, blocks."""
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=100)
    @given(envelope=slack_envelopes())
    def one(envelope: JSON) -> None:
        async def deliver() -> None:
            delivered = await slack_rig.event(envelope)
            slack_rig.check(delivered, acked=True)

        run_on(loop, deliver())

    await asyncio.to_thread(one)
    await slack_rig.still_answers()


async def test_slack_random_bodies_fuzz(slack_rig: SlackRig) -> None:
    """Any JSON, JSON objects in bolt's vocabulary, forms and non-JSON, signed or not."""
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=100)
    @given(request=slack_bodies())
    def one(request: tuple[str, str, bool]) -> None:
        body, content_type, signed = request

        async def deliver() -> None:
            calls = len(slack_rig.slack.calls)
            delivered = await slack_rig.post(body, content_type, signed=signed)
            slack_rig.check(delivered, signed=signed)
            if not signed:
                assert len(slack_rig.slack.calls) == calls, "an unsigned request got through"

        run_on(loop, deliver())

    await asyncio.to_thread(one)
    await slack_rig.still_answers()


async def test_slack_commands_and_buttons_fuzz(slack_rig: SlackRig) -> None:
    """/memories and /forget with random text and ids; forget buttons with random values."""
    loop = asyncio.get_running_loop()
    for user in ("U1", "U2", "UADMIN"):
        await slack_rig.bot.remember(f"slack:T1:{user}", "I like tea")

    @settings(FUZZ, max_examples=80)
    @given(request=slash_commands() | block_actions())
    def one(request: dict[str, str] | tuple[str, str, str, JSON]) -> None:
        async def deliver() -> None:
            if isinstance(request, dict):
                delivered = await slack_rig.command(request)
                ours = request["command"] in ("/memories", "/forget")
            else:
                delivered = await slack_rig.click(*request)
                ours = request[1] in ("forget_confirm", "forget_cancel")
            slack_rig.check(delivered, acked=ours)

        run_on(loop, deliver())

    await asyncio.to_thread(one)
    await slack_rig.still_answers()


def without(payload: JSON, key: str) -> JSON:
    return {k: v for k, v in payload.items() if k != key}


def _event(event: JSON) -> Callable[[SlackRig], Awaitable[Delivered]]:
    return lambda rig: rig.event({"type": "event_callback", "team_id": "T1", "event": event})


async def _unpostable_mention(rig: SlackRig) -> Delivered:
    rig.slack.fail("chat.postMessage", error="not_in_channel")
    return await rig.event(
        {"type": "event_callback", "team_id": "T1", "event": app_mention("U1", "<@UBOT> hi")}
    )


async def _garbage_forget_value(rig: SlackRig) -> Delivered:
    return await rig.click("U1", "forget_confirm", "not json", {})


async def _unsigned_array(rig: SlackRig) -> Delivered:
    return await rig.post("[]", signed=False)


MENTION = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1700000000.000100"}
DM = {"type": "message", "user": "U1", "text": "hi", "ts": "1700000000.000200"}
DM |= {"channel": "D1", "channel_type": "im"}
THREAD_REPLY = DM | {"channel": "C1", "channel_type": "channel", "thread_ts": "1.000001"}


@pytest.mark.parametrize(
    "deliver",
    [
        pytest.param(_event(MENTION | {"channel": "C1"}), id="normal-mention"),
        pytest.param(
            _event(MENTION),
            id="mention-without-channel",
        ),
        pytest.param(
            _event(without(MENTION | {"channel": "C1"}, "user")),
            id="mention-without-user",
        ),
        pytest.param(
            _event(without(DM, "channel")),
            id="dm-without-channel",
        ),
        pytest.param(
            _event(MENTION | {"channel": "C1", "text": 5}),
            id="mention-text-not-a-string",
        ),
        pytest.param(
            _event(DM | {"subtype": []}),
            id="message-subtype-a-list",
        ),
        pytest.param(
            _event(THREAD_REPLY | {"text": None}),
            id="thread-reply-text-null",
        ),
        pytest.param(
            _unpostable_mention,
            id="mention-where-posting-fails",
        ),
        pytest.param(
            _event(MENTION | {"channel": ""}),
            id="mention-in-channel-empty-string",
        ),
        pytest.param(
            _garbage_forget_value,
            id="forget-button-value-not-json",
        ),
        pytest.param(
            _unsigned_array,
            id="unsigned-json-array",
        ),
    ],
)
async def test_slack_minimal_payloads(
    slack_rig: SlackRig, deliver: Callable[[SlackRig], Awaitable[Delivered]]
) -> None:
    delivered = await deliver(slack_rig)
    slack_rig.check(delivered, tolerate=False)
    assert delivered.status < 500, delivered


# -- Discord -------------------------------------------------------------------------------

BOTS_THREAD, MEMBERS_THREAD = 1_200_000_000_000_000_070, 1_200_000_000_000_000_071
UNKNOWN_CHANNEL, UNKNOWN_GUILD = 1_200_000_000_000_000_090, 1_200_000_000_000_000_091
STRANGER = 1_300_000_000_000_000_099  # in no guild the bot knows
ME = f"<@{APPLICATION_ID}>"
# Discord sends UTF-8 (discord.py reads it with orjson, which refuses lone surrogates).
DISCORD_TEXT = texts(st.characters(codec="utf-8"), ME) | st.text(max_size=80).map(
    lambda t: f"<@!{APPLICATION_ID}> {t}"
)
SNOWFLAKES = st.integers(1 << 22, (1 << 63) - 1)
HANDLER_TASKS = ("discord.py: on_message", "CommandTree-invoker", "discord-ui-view-dispatch")


def some_of(**changes: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Up to three of the named changes; none first, so examples shrink toward plain ones."""
    pairs = [st.tuples(st.just(key), value) for key, value in changes.items()]
    return st.lists(st.one_of(pairs), max_size=3).map(dict)


RARELY = st.integers(0, 9).map(lambda n: n == 9)
ATTACHMENTS = st.lists(
    st.fixed_dictionaries(
        {"filename": st.text(min_size=1, max_size=20), "size": st.integers(0, 2**40)},
        optional={"content_type": st.text(max_size=20)},
    ),
    max_size=2,
)
EMBEDS = st.lists(
    st.fixed_dictionaries({}, optional={"title": st.text(), "description": HUGE}), max_size=2
)


@st.composite
def discord_messages(draw: st.DrawFn) -> tuple[JSON, dict[str, Any]]:
    """(MESSAGE_CREATE builder options, changes): the fake builds a consistent message,
    the changes bend it the ways the gateway can (without breaking discord.py's parser)."""
    author = draw(st.sampled_from([MEMBER_ID, ADMIN_ID, STRANGER, APPLICATION_ID]))
    channel = draw(st.sampled_from([CHANNEL_ID, DM_CHANNEL_ID, BOTS_THREAD, MEMBERS_THREAD]))
    build = {"author": author, "content": draw(DISCORD_TEXT), "channel_id": channel}
    build |= {"mentions_bot": draw(st.booleans()), "author_bot": draw(RARELY)}
    # A reply: None, to the bot's last message, or to one the fake never saw.
    build["message_reference"] = draw(st.sampled_from([None, None, "last", "unknown"]))
    changes = some_of(
        channel_id=st.just(UNKNOWN_CHANNEL),
        guild_id=st.sampled_from([UNKNOWN_GUILD, None]),  # None: the key left out
        drop_member=st.just(True),
        mentions=st.lists(st.sampled_from([APPLICATION_ID, MEMBER_ID, STRANGER]), max_size=3),
        mention_everyone=st.booleans(),
        mention_roles=st.lists(SNOWFLAKES.map(str), max_size=2),
        attachments=ATTACHMENTS,
        embeds=EMBEDS,
        type=st.sampled_from([0, 19, 6, 7, 18, 20, 21, 999]),
        webhook_id=SNOWFLAKES.map(str),
        flags=st.integers(0, 1 << 16),
        tts=st.booleans(),
        referenced_message=st.none(),
        deleted_before_reply=st.just(True),
    )
    return build, draw(changes)


@st.composite
def discord_commands(draw: st.DrawFn) -> tuple[JSON, dict[str, Any]]:
    """(INTERACTION_CREATE builder options, changes) for a slash command."""
    name = draw(st.sampled_from(["ask", "memories", "remember", "forget", "forget-user", ""]))
    name = name or draw(st.text(min_size=1, max_size=12))  # never synced, or since removed
    options: list[JSON] | None = None
    if name == "ask":
        options = [{"name": "question", "type": 3, "value": draw(DISCORD_TEXT)}]
    elif name == "remember":
        options = [{"name": "fact", "type": 3, "value": draw(DISCORD_TEXT)}]
    elif name == "forget-user":
        target = draw(st.sampled_from([MEMBER_ID, ADMIN_ID, STRANGER, APPLICATION_ID]))
        options = [{"name": "user", "type": 6, "value": str(target)}]
    user = draw(st.sampled_from([MEMBER_ID, ADMIN_ID]))
    channel = draw(st.sampled_from([CHANNEL_ID, DM_CHANNEL_ID, BOTS_THREAD, MEMBERS_THREAD]))
    build = {"name": name, "options": options, "user": user, "channel_id": channel}
    changes = some_of(
        options=st.just(None)  # options Discord did not send, or ones we never declared
        | st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["question", "fact", "x"]),
                    "type": st.just(3),
                    "value": DISCORD_TEXT,
                }
            ),
            max_size=2,
        ),
        channel_id=st.just(UNKNOWN_CHANNEL),
        guild_id=st.just(UNKNOWN_GUILD),
        resolved=st.sampled_from(["user", "none"]),  # the member (or user) left out
        permissions=st.integers(0, (1 << 53) - 1).map(str),
        app_permissions=st.integers(0, (1 << 53) - 1).map(str),
        locale=st.sampled_from(["de", "ja", "xx-YY"]),
        member_user=st.just(STRANGER),
    )
    return build, draw(changes)


@st.composite
def discord_clicks(draw: st.DrawFn) -> tuple[int, int, str, bool]:
    """(asker, clicker, custom_id, on the confirmation?) for the /forget buttons."""
    asker = draw(st.sampled_from([MEMBER_ID, ADMIN_ID]))
    clicker = draw(st.sampled_from([MEMBER_ID, ADMIN_ID]))
    custom_id = draw(st.sampled_from(["forget:erase", "forget:cancel"]) | st.text(max_size=20))
    return asker, clicker, custom_id, draw(st.booleans())


@dataclass
class DiscordRig:
    fake: FakeDiscord
    bot: MemoryBot
    adapter: DiscordAdapter
    connection: asyncio.Task[None]
    logs: Captured
    escaped: list[Failure] = field(default_factory=list)
    sentinels: Iterator[int] = field(default_factory=itertools.count)

    async def settle(self) -> None:
        """Until discord.py has read everything sent so far and our handlers are done (their
        replies come back as MESSAGE_CREATE, so this goes round until nothing is left)."""
        for _ in range(50):
            assert not self.connection.done(), f"the gateway connection ended: {self.connection}"
            name = f"FUZZ_SENTINEL_{next(self.sentinels)}"
            seen = asyncio.ensure_future(
                self.adapter.client.wait_for(
                    "socket_event_type", check=lambda t, name=name: t == name
                )
            )
            await self.fake.dispatch(name, {})
            await asyncio.wait_for(seen, WAIT)
            handlers = [t for t in asyncio.all_tasks() if t.get_name().startswith(HANDLER_TASKS)]
            if not handlers:
                return
            results = await asyncio.wait_for(
                asyncio.gather(*handlers, return_exceptions=True), WAIT
            )
            for task, result in zip(handlers, results, strict=True):
                if isinstance(result, Exception):
                    self.escaped.append(Failure.of(f"task {task.get_name()}", result))
        raise AssertionError("discord.py's handlers never settled")

    def check(self, *, tolerate: bool = True) -> None:
        failures, self.escaped = self.escaped + self.logs.take(), []
        bad = unexplained(failures) if tolerate else failures
        assert not bad, "escaped the Discord adapter:\n" + "\n".join(map(str, bad))

    async def message(self, build: JSON, changes: dict[str, Any]) -> None:
        fake, build = self.fake, dict(build)
        reference = build.pop("message_reference", None)
        if reference == "last" and fake.sent:
            build["message_reference"] = int(fake.sent[-1]["id"])
        elif reference == "unknown":
            build["message_reference"] = 4_200_000_000_000_000_000  # a message never seen
        author = build.pop("author")
        data = fake.message_create(author, build.pop("content"), **build)
        if changes.get("deleted_before_reply"):
            fake.messages.pop(int(data["id"]), None)
        if "channel_id" in changes:
            data["channel_id"] = str(changes["channel_id"])
        if "guild_id" in changes:
            if changes["guild_id"] is None:
                data.pop("guild_id", None)
            else:
                data["guild_id"] = str(changes["guild_id"])
        if changes.get("drop_member"):
            data.pop("member", None)
        if "mentions" in changes:
            data["mentions"] = [fake._user(i) for i in changes["mentions"]]
        for key in ("mention_everyone", "mention_roles", "embeds", "type", "webhook_id"):
            if key in changes:
                data[key] = changes[key]
        for key in ("flags", "tts", "referenced_message"):
            if key in changes:
                data[key] = changes[key]
        if "attachments" in changes:
            data["attachments"] = [
                {"id": str(n + 1), "url": "https://cdn/x", "proxy_url": "https://cdn/x"} | a
                for n, a in enumerate(changes["attachments"])
            ]
        await fake.dispatch("MESSAGE_CREATE", data)
        await self.settle()

    async def command(self, build: JSON, changes: dict[str, Any]) -> None:
        fake = self.fake
        options = changes.get("options", build["options"])
        data = fake.interaction_create(
            build["name"], options, user=build["user"], channel_id=build["channel_id"]
        )
        guild, options = fake.guilds[0], data["data"].get("options") or []
        targets = [int(o["value"]) for o in options if o["type"] == 6]
        resolved = changes.get("resolved", "member")
        if targets and resolved != "none":
            users = {str(t): fake._user(t) for t in targets}
            data["data"]["resolved"] = {"users": users}
            members = [m for m in guild.members if m.user_id in targets]
            if resolved == "member" and "guild_id" in data:
                data["data"]["resolved"]["members"] = {
                    str(m.user_id): fake._member(guild, m, with_user=False) for m in members
                }
        if "channel_id" in changes:
            data["channel_id"] = data["channel"]["id"] = str(changes["channel_id"])
        if "guild_id" in changes and "guild_id" in data:
            data["guild_id"] = data["guild"]["id"] = str(changes["guild_id"])
        if "member" in data:
            if "permissions" in changes:
                data["member"]["permissions"] = changes["permissions"]
            if "member_user" in changes:
                data["member"]["user"] = fake._user(changes["member_user"])
        for key in ("app_permissions", "locale"):
            if key in changes:
                data[key] = changes[key]
        await fake.dispatch("INTERACTION_CREATE", data)
        await self.settle()

    async def click(self, asker: int, clicker: int, custom_id: str, on_confirmation: bool) -> None:
        fake = self.fake
        await self.bot.remember(f"discord:{GUILD_ID}:{asker}", "I like tea")
        await self.command({"name": "forget", "options": None, "user": asker} | CHANNEL, {})
        # Else a bot message without buttons, as if the confirmation had expired.
        message = (
            fake.sent[-1] if on_confirmation else fake._message(APPLICATION_ID, "old", CHANNEL_ID)
        )
        data = fake.component_interaction(
            custom_id, user=clicker, channel_id=CHANNEL_ID, message=message
        )
        await fake.dispatch("INTERACTION_CREATE", data)
        await self.settle()

    async def still_answers(self) -> None:
        messages = "/channels/{channel_id}/messages"
        before = len(self.fake.calls_to("POST", messages))
        data = self.fake.message_create(
            MEMBER_ID, f"{ME} are you still there?", channel_id=CHANNEL_ID
        )
        await self.fake.dispatch("MESSAGE_CREATE", data)
        posts = await self.fake.wait_for("POST", messages, count=before + 1)
        assert posts[-1].json["content"].startswith("[offline]")
        await self.settle()


CHANNEL = {"channel_id": CHANNEL_ID}


@pytest.fixture
async def discord_rig(tmp_path: Path, local_embeddings) -> AsyncIterator[DiscordRig]:
    (guild,) = default_guilds()
    guild.channels.append(Channel(BOTS_THREAD, "bot's thread", 11, CHANNEL_ID, APPLICATION_ID))
    guild.channels.append(Channel(MEMBERS_THREAD, "a thread", 11, CHANNEL_ID, MEMBER_ID))
    async with FakeDiscord(guilds=[guild]) as fake:
        with fake.patch_client():
            config = Settings(
                data_dir=tmp_path,
                llm_provider="offline",
                discord_token=fake.token,
                discord_message_content=True,  # thread follow-ups reach more of our code
                audit_log_path=tmp_path / "audit.jsonl",
            )
            async with MemoryBot.open(config, embeddings=local_embeddings) as bot:
                adapter = DiscordAdapter(bot, config, guild_ready_timeout=0.05)
                await adapter.client.login(fake.token)
                connection = asyncio.create_task(adapter.client.connect())
                await asyncio.wait_for(adapter.client.wait_until_ready(), WAIT)
                with captured_logs() as logs:
                    try:
                        yield DiscordRig(fake, bot, adapter, connection, logs)
                    finally:
                        await adapter.client.close()
                        await asyncio.wait_for(connection, WAIT)


async def test_discord_messages_fuzz(discord_rig: DiscordRig) -> None:
    """MESSAGE_CREATE with random content, mentions, attachments, replies, thread channels,
    missing members, unknown guilds and channels, messages deleted before the reply."""
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=50)
    @given(message=discord_messages())
    def one(message: tuple[JSON, dict[str, Any]]) -> None:
        async def deliver() -> None:
            await discord_rig.message(*message)
            discord_rig.check()

        run_on(loop, deliver())

    await asyncio.to_thread(one)
    await discord_rig.still_answers()
    discord_rig.check()


async def test_discord_interactions_fuzz(discord_rig: DiscordRig) -> None:
    """INTERACTION_CREATE: our commands (and unknown ones) with random option values,
    resolved or unresolved users, odd permissions, unknown guilds and channels; clicks on
    the /forget confirmation by the asker or someone else, and on other messages."""
    loop = asyncio.get_running_loop()

    @settings(FUZZ, max_examples=50)
    @given(interaction=discord_commands() | discord_clicks())
    def one(interaction: tuple[Any, ...]) -> None:
        async def deliver() -> None:
            if len(interaction) == 2:
                await discord_rig.command(*interaction)
            else:
                await discord_rig.click(*interaction)
            discord_rig.check()

        run_on(loop, deliver())

    await asyncio.to_thread(one)
    await discord_rig.still_answers()
    discord_rig.check()


async def _deleted_before_reply(rig: DiscordRig) -> None:
    await rig.message(
        {"author": MEMBER_ID, "content": f"{ME} hi", "channel_id": CHANNEL_ID},
        {"deleted_before_reply": True},
    )


async def _expired_interaction(rig: DiscordRig) -> None:
    rig.fake.ack_deadline = -1.0  # the 3 s window has passed: Discord says Unknown interaction
    await rig.command({"name": "memories", "options": None, "user": MEMBER_ID} | CHANNEL, {})


async def _normal_mention(rig: DiscordRig) -> None:
    await rig.message({"author": MEMBER_ID, "content": f"{ME} hi", "channel_id": CHANNEL_ID}, {})


@pytest.mark.parametrize(
    "deliver",
    [
        pytest.param(_normal_mention, id="normal-mention"),
        pytest.param(
            _deleted_before_reply,
            id="mention-deleted-before-the-reply",
        ),
        pytest.param(
            _expired_interaction,
            id="interaction-past-its-ack-window",
        ),
    ],
)
async def test_discord_minimal_payloads(
    discord_rig: DiscordRig, deliver: Callable[[DiscordRig], Awaitable[None]]
) -> None:
    await deliver(discord_rig)
    discord_rig.check(tolerate=False)


async def test_discord_uncached_guild_message_is_not_a_dm(discord_rig: DiscordRig) -> None:
    run = discord_rig
    await run.message(
        {"author": MEMBER_ID, "content": "just chatting, no mention", "channel_id": CHANNEL_ID},
        {"guild_id": UNKNOWN_GUILD},
    )
    run.check(tolerate=False)
    assert not run.fake.calls_to("POST", "/channels/{channel_id}/messages"), "it answered"
    assert not await run.bot.history(f"discord:dm:{CHANNEL_ID}")
