"""The fake Slack speaks the protocol the real SDKs expect.

Each test points an unmodified `slack_sdk` / `slack_bolt` component at `tests/fakes/slack.py`
(Web API client, signature verifier, Socket Mode client, a bolt app over HTTP and over Socket
Mode). If the fake drifted from what the SDKs send or accept, these are the tests that break,
rather than the bot's adapter tests failing for reasons that have nothing to do with the bot.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from tests.fakes.slack import Call, FakeSlack, app_mention, fresh_ts, message

SECRET = "test-signing-secret"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET) as fake:
        yield fake


@pytest.fixture
def client(slack: FakeSlack) -> AsyncWebClient:
    return AsyncWebClient(token="xoxb-test", base_url=slack.api_url)


@contextlib.asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run an aiohttp app on a free local port for the test's duration; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def capture() -> AsyncIterator[tuple[str, list[web.Request], list[str]]]:
    """A stand-in app that answers 200 and keeps each request and its raw body."""
    requests: list[web.Request] = []
    bodies: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        requests.append(request)
        bodies.append(await request.text())
        return web.Response(text="")

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    async with serve(app) as base:
        yield f"{base}/slack/events", requests, bodies


# -- Web API through AsyncWebClient ---------------------------------------------------------


async def test_auth_test_reports_the_bot_identity(slack: FakeSlack, client: AsyncWebClient):
    resp = await client.auth_test()
    assert (resp["user_id"], resp["bot_id"], resp["team_id"]) == ("UBOT", "BBOT", "T1")
    assert resp["team"] and resp["url"] and resp["user"]
    assert slack.calls == [Call("auth.test", {}, "xoxb-test")]


async def test_post_message_in_thread(slack: FakeSlack, client: AsyncWebClient):
    first = await client.chat_postMessage(channel="C1", text="hi", thread_ts="1700000000.000100")
    second = await client.chat_postMessage(channel="C1", text="again")
    assert first["channel"] == "C1"
    assert first["message"] == {
        "type": "message",
        "text": "hi",
        "user": "UBOT",
        "bot_id": "BBOT",
        "ts": first["ts"],
        "thread_ts": "1700000000.000100",
    }
    assert float(second["ts"]) > float(first["ts"])
    assert "thread_ts" not in second["message"]
    call = slack.calls_to("chat.postMessage")[0]
    assert call.args == {"channel": "C1", "text": "hi", "thread_ts": "1700000000.000100"}
    assert call.token == "xoxb-test"


async def test_users_info_known_and_unknown(slack: FakeSlack, client: AsyncWebClient):
    slack.users["U1"] = {"id": "U1", "is_admin": True, "is_bot": False, "team_id": "T1"}
    assert (await client.users_info(user="U1"))["user"]["is_admin"] is True
    with pytest.raises(SlackApiError) as raised:
        await client.users_info(user="U404")
    assert raised.value.response["error"] == "user_not_found"
    assert [c.args for c in slack.calls_to("users.info")] == [{"user": "U1"}, {"user": "U404"}]


@pytest.mark.parametrize("status", [200, 429])
async def test_failure_injection(slack: FakeSlack, client: AsyncWebClient, status: int):
    slack.fail("chat.postMessage", error="ratelimited", times=1, status=status)
    with pytest.raises(SlackApiError) as raised:
        await client.chat_postMessage(channel="C1", text="hi")
    assert raised.value.response.status_code == status
    assert raised.value.response["error"] == "ratelimited"
    if status == 429:
        assert raised.value.response.headers["Retry-After"] == "0"
    assert (await client.chat_postMessage(channel="C1", text="hi"))["ok"]
    assert len(slack.calls_to("chat.postMessage")) == 2


async def test_rate_limit_retry_handler_retries_a_429(slack: FakeSlack):
    client = AsyncWebClient(
        token="xoxb-test",
        base_url=slack.api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)],
    )
    slack.fail("chat.postMessage", status=429)
    assert (await client.chat_postMessage(channel="C1", text="hi"))["ok"]
    assert len(slack.calls_to("chat.postMessage")) == 2


async def test_form_body_and_token_field(slack: FakeSlack):
    """Args and token also arrive form-encoded (no Authorization header), as older callers send."""
    anonymous = AsyncWebClient(base_url=slack.api_url)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    args = {"channel": "C1", "blocks": json.dumps(blocks)}
    resp = await anonymous.api_call("chat.postMessage", data=args | {"token": "xoxb-form"})
    assert resp["message"]["blocks"] == blocks
    assert slack.calls[-1] == Call("chat.postMessage", args, "xoxb-form")


async def test_tokens_and_unknown_methods_are_refused(slack: FakeSlack, client: AsyncWebClient):
    errors = []
    for call in (
        client.api_call("reactions.add", json={"name": "eyes"}),
        AsyncWebClient(base_url=slack.api_url).auth_test(),
        AsyncWebClient(token="xapp-test", base_url=slack.api_url).auth_test(),
        client.apps_connections_open(app_token="xoxb-test"),
        client.api_call("chat.postMessage", json={"channel": "C1"}),
    ):
        with pytest.raises(SlackApiError) as raised:
            await call
        errors.append(raised.value.response["error"])
    assert errors == [
        "unknown_method",
        "not_authed",
        "not_allowed_token_type",
        "not_allowed_token_type",
        "no_text",
    ]
    assert [c.method for c in slack.calls][:2] == ["reactions.add", "auth.test"]
    assert slack.calls[0].args == {"name": "eyes"}


async def test_other_methods(slack: FakeSlack, client: AsyncWebClient):
    parent = message("U1", "question", channel="C1", channel_type="channel")
    slack.replies[("C1", parent["ts"])] = [parent]
    replies = await client.conversations_replies(channel="C1", ts=parent["ts"])
    assert replies["messages"] == [parent]
    assert (await client.conversations_replies(channel="C1", ts="1.000001"))["messages"] == []
    updated = await client.chat_update(channel="C1", ts="1.000001", text="edited")
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C1", "1.000001", "edited")
    ephemeral = await client.chat_postEphemeral(channel="C1", user="U1", text="psst")
    assert ephemeral["message_ts"]
    assert (await client.chat_delete(channel="C1", ts="1.000001"))["ok"]
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.0", status="thinking")
    assert slack.calls_to("assistant.threads.setStatus")[0].args["status"] == "thinking"
    opened = await client.apps_connections_open(app_token="xapp-test")
    assert opened["url"] == slack.socket_url
    assert slack.calls[-1].token == "xapp-test"


async def test_response_url_records_posts(slack: FakeSlack):
    url = slack.response_url()
    assert url != slack.response_url()
    resp = await AsyncWebhookClient(url).send(text="done", response_type="ephemeral")
    assert resp.status_code == 200
    assert await slack.wait_for_responses() == [{"text": "done", "response_type": "ephemeral"}]


# -- HTTP mode delivery ---------------------------------------------------------------------


def verdicts(requests: list[web.Request], bodies: list[str]) -> list[bool]:
    """The SDK's own verifier (the one bolt uses) on each captured request."""
    verifier = SignatureVerifier(SECRET)
    return [verifier.is_valid_request(b, r.headers) for r, b in zip(requests, bodies, strict=True)]


async def test_post_event_is_signed_like_slack(slack: FakeSlack):
    async with capture() as (url, requests, bodies):
        event = app_mention("U1", "<@UBOT> hi")
        delivered = await slack.post_event(url, event, retry_num=2)
        await slack.post_event(url, event, bad_signature=True)
        await slack.post_event(url, event, timestamp=int(time.time()) - 600)
    assert delivered.status == 200 and delivered.seconds > 0
    assert verdicts(requests, bodies) == [True, False, False]
    envelope = json.loads(bodies[0])
    assert requests[0].content_type == "application/json"
    assert envelope["type"] == "event_callback" and envelope["event"] == event
    assert envelope["event_id"].startswith("Ev") and envelope["team_id"] == "T1"
    assert envelope["authorizations"][0]["user_id"] == "UBOT"
    assert requests[0].headers["X-Slack-Retry-Num"] == "2"
    assert requests[0].headers["X-Slack-Retry-Reason"] == "http_timeout"
    assert "X-Slack-Retry-Num" not in requests[1].headers


async def test_commands_and_interactions_are_signed_forms(slack: FakeSlack):
    payload = slack.block_actions_payload("U1", "forget", "m-1")
    async with capture() as (url, requests, bodies):
        await slack.post_command(url, "/memory", "list all", user_id="U1", channel_id="D1")
        await slack.post_interaction(url, payload)
    assert verdicts(requests, bodies) == [True, True]
    command = dict(parse_qsl(bodies[0]))
    assert [command[k] for k in ("command", "text", "user_id")] == ["/memory", "list all", "U1"]
    assert command["response_url"].startswith(f"http://127.0.0.1:{slack.port}/response/")
    assert command["trigger_id"]
    assert json.loads(dict(parse_qsl(bodies[1]))["payload"]) == payload


# -- Socket Mode with the SDK client --------------------------------------------------------


def socket_mode_client(slack: FakeSlack) -> SocketModeClient:
    """The SDK's own aiohttp Socket Mode client; it asks `apps.connections.open` for the URL."""
    return SocketModeClient(
        app_token="xapp-test", web_client=AsyncWebClient(base_url=slack.api_url)
    )


async def test_socket_mode_client_receives_and_acks(slack: FakeSlack):
    received: list[SocketModeRequest] = []
    messages: list[dict[str, Any]] = []

    async def on_message(client: Any, message: dict[str, Any], raw: str | None) -> None:
        messages.append(message)

    async def on_request(client: SocketModeClient, req: SocketModeRequest) -> None:
        received.append(req)
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=req.envelope_id, payload={"seen": True})
        )

    client = socket_mode_client(slack)
    client.message_listeners.append(on_message)
    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()
        await slack.connected()
        event = message("U1", "hello")
        acked = await slack.push("events_api", slack.event_payload(event), retry_attempt=1)
        await slack.push("slash_commands", slack.command_payload("/memory", user_id="U1"))
    finally:
        await client.close()
    assert slack.calls_to("apps.connections.open")[0].token == "xapp-test"
    assert messages[0]["type"] == "hello"
    assert acked.payload == {"seen": True} and acked.envelope_id == received[0].envelope_id
    assert received[0].type == "events_api" and received[0].payload["event"] == event
    assert (received[0].retry_attempt, received[0].accepts_response_payload) == (1, False)
    # Commands may be answered in the ack, and only Events API envelopes carry retry fields.
    assert (received[1].retry_attempt, received[1].accepts_response_payload) == (None, True)


async def test_push_without_ack_times_out(slack: FakeSlack):
    with pytest.raises(TimeoutError, match="no Socket Mode client"):
        await slack.push("events_api", slack.event_payload(message("U1", "x")), timeout=0.05)
    client = socket_mode_client(slack)
    try:
        await client.connect()  # no listener: nothing acks
        with pytest.raises(TimeoutError, match="no ack"):
            await slack.push("events_api", slack.event_payload(message("U1", "x")), timeout=0.2)
    finally:
        await client.close()


# -- a bolt app against the fake ------------------------------------------------------------


def bolt_app(slack: FakeSlack, seen: list[AsyncBoltRequest] | None = None) -> AsyncApp:
    """A minimal bolt app: `say` to mentions; ack + respond to `/memory` and a `forget` button."""
    app = AsyncApp(
        signing_secret=SECRET, client=AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    )

    @app.event("app_mention")
    async def mentioned(event: dict[str, Any], say: Any, request: AsyncBoltRequest) -> None:
        if seen is not None:
            seen.append(request)
        await say(f"hi <@{event['user']}>")

    @app.command("/memory")
    async def memory(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack("working on it")
        await respond(f"you said {command['text']}")

    @app.action("forget")
    async def forget(ack: Any, respond: Any, action: dict[str, Any]) -> None:
        await ack()
        await respond(f"forgot {action['value']}")

    return app


async def test_bolt_over_http(slack: FakeSlack):
    app = bolt_app(slack)
    async with serve(app.web_app()) as base:
        url = f"{base}/slack/events"
        rejected = await slack.post_event(url, app_mention("U1", "<@UBOT> hi"), bad_signature=True)
        delivered = await slack.post_event(url, app_mention("U1", "<@UBOT> hi", channel="C9"))
        posts = await slack.wait_for("chat.postMessage")
        command = await slack.post_command(url, "/memory", "list", user_id="U1")
        await slack.wait_for_responses()
        click = slack.block_actions_payload("U1", "forget", "m-7")
        clicked = await slack.post_interaction(url, click)
        responses = await slack.wait_for_responses(count=2)
    assert rejected.status == 401
    assert delivered.status == 200  # (how fast is bench/slack_ack_bench.py's business)
    assert [(c.args["channel"], c.args["text"]) for c in posts] == [("C9", "hi <@U1>")]
    assert slack.calls_to("auth.test") and slack.calls_to("chat.postMessage") == posts
    # ack(text) answers HTTP mode with a plain-text body (Socket Mode gets {"text": ...}).
    assert (command.status, command.body_text) == (200, "working on it")
    assert clicked.status == 200 and clicked.body_text == ""
    assert [r["text"] for r in responses] == ["you said list", "forgot m-7"]


async def test_bolt_over_socket_mode(slack: FakeSlack):
    handler = AsyncSocketModeHandler(bolt_app(slack), app_token="xapp-test")
    try:
        await handler.connect_async()
        event = app_mention("U1", "<@UBOT> hi", channel="C7")
        acked = await slack.push("events_api", slack.event_payload(event))
        posts = await slack.wait_for("chat.postMessage")
        payload = slack.command_payload("/memory", "x", user_id="U1")
        command = await slack.push("slash_commands", payload)
        await slack.wait_for_responses()
        clicked = await slack.push("interactive", slack.block_actions_payload("U1", "forget", "m"))
        responses = await slack.wait_for_responses(count=2)
    finally:
        await handler.close_async()
    assert acked.payload is None
    assert [(c.args["channel"], c.args["text"]) for c in posts] == [("C7", "hi <@U1>")]
    assert command.payload == {"text": "working on it"}
    assert clicked.payload is None
    assert [r["text"] for r in responses] == ["you said x", "forgot m"]


async def test_bolt_sees_retry_markers_in_both_modes(slack: FakeSlack):
    """bolt does not drop Slack's retries: it hands them to the listener, marked by headers."""
    seen: list[AsyncBoltRequest] = []
    app = bolt_app(slack, seen)
    async with serve(app.web_app()) as base:
        url = f"{base}/slack/events"
        await slack.post_event(url, app_mention("U1", "a"), retry_num=1)
        await slack.post_event(url, app_mention("U1", "b"))
        await slack.wait_for("chat.postMessage", count=2)
    handler = AsyncSocketModeHandler(app, app_token="xapp-test")
    try:
        await handler.connect_async()
        await slack.push("events_api", slack.event_payload(app_mention("U1", "c")), retry_attempt=2)
        await slack.push("events_api", slack.event_payload(app_mention("U1", "d")))
        await slack.wait_for("chat.postMessage", count=4)
    finally:
        await handler.close_async()
    retry_nums = {r.body["event"]["text"]: r.headers.get("x-slack-retry-num") for r in seen}
    # A first Socket Mode delivery carries retry_attempt 0, so bolt mirrors it as "0".
    assert retry_nums == {"a": ["1"], "b": None, "c": ["2"], "d": ["0"]}


# -- event builders -------------------------------------------------------------------------


def test_event_builders_look_like_slack():
    mention = app_mention("U1", "<@UBOT> hi", thread_ts="1.000001")
    assert mention["type"] == "app_mention" and mention["event_ts"] == mention["ts"]
    assert mention["thread_ts"] == "1.000001" and "channel_type" not in mention
    elements = mention["blocks"][0]["elements"][0]["elements"]
    assert elements == [
        {"type": "user", "user_id": "UBOT"},
        {"type": "text", "text": " hi"},
    ]
    dm = message("U1", "hi")
    assert (dm["channel"], dm["channel_type"], dm["team"]) == ("D1", "im", "T1")
    assert "subtype" not in dm and "bot_id" not in dm and "thread_ts" not in dm
    bot = message("U2", "beep", bot_id="B2", subtype="bot_message")
    assert (bot["bot_id"], bot["subtype"]) == ("B2", "bot_message")
    upload = message("U1", "", files=[{"id": "F1", "name": "a.txt"}])
    assert upload["subtype"] == "file_share" and upload["files"][0]["id"] == "F1"
    stamps = [fresh_ts() for _ in range(100)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 100
    assert abs(float(stamps[0]) - time.time()) < 60
