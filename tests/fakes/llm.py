"""A local fake of the Anthropic and OpenAI HTTP APIs, for tests that drive the real SDKs.

Why it exists: most of what can go wrong in a model adapter lives in the vendor SDK and on the
wire (URL layout, auth headers, retries on 429/5xx/529, timeouts, error classes, base64
embeddings, Server-Sent Events). Mocking our own functions would test none of that, and the
real APIs are out of reach from tests (no network, no keys). So this server speaks just enough
of both vendors' formats, plain and streaming (`"stream": true`: Anthropic's `event:`/`data:`
records, OpenAI's `chat.completion.chunk`s ending in `data: [DONE]`), for the real `anthropic`
and `openai` clients, pointed at it through `base_url`, and LangChain's chat models on top of
them, to do their whole job.

It serves from its own event loop in a background thread, so a synchronous SDK client (or
anything else that blocks the test's loop) cannot deadlock it. Usage::

    async with FakeLLM() as fake:        # or `with FakeLLM() as fake:` in a sync test
        client = anthropic.AsyncAnthropic(api_key="k", base_url=fake.anthropic_url)
        fake.reply = lambda body: "hi"   # the text of every successful chat reply
        fake.reply = lambda body: ToolUse("save", {"x": 1})  # or a tool call (structured output)
        fake.fail(529, times=3)          # the next three requests get a vendor-shaped error
        fake.delay = 2.0                 # each response is held back this long (timeouts)
        fake.delay = lambda body: 0.5    # ... or per request
        held = fake.hold(lambda body: bool(body.get("tools")))  # these wait for the test:
        await held.arrived()             # one is being held now
        held.release()                   # it, and any later one, is answered
        fake.requests                    # everything received, in order (`Received`)

    Streamed replies go out one piece (a word with its leading whitespace) per delta::

        fake.first_token_delay = 0.3     # seconds between the stream's start and its first piece
        fake.tokens_per_second = 50      # then 1/50 s between pieces (None: no pause)
        fake.break_stream(2)             # the next stream sends 2 pieces, then an error event
        fake.streamed                    # the text of every text reply streamed in full, in order

    `delay`, `fail()` and `hold()` act before a response starts, streamed or not: a failure
    is a plain HTTP error, never an error inside a stream (that is `break_stream`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import random
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer
from tests.fakes.waits import WAIT

# Vendor `error.type` by status. Other 4xx are "invalid_request_error"; other 5xx are
# "api_error" (Anthropic) or "server_error" (OpenAI).
_ERROR_TYPES = {
    "anthropic": {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"},
    "openai": {429: "requests"},
}

# A streamed reply's pieces: each word with the whitespace before it (all of a blank text).
_PIECE = re.compile(r"\s*\S+|\s+")


@dataclass(frozen=True)
class Received:
    """One request as the fake saw it: header names lower-cased, body parsed (None if not JSON)."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class ToolUse:
    """A scripted tool call. `arguments` as a str is sent verbatim, so a test can send
    malformed JSON (OpenAI carries arguments as a JSON string; Anthropic as an object, so
    for Anthropic a str that does not parse is sent as `{"_raw": str}`, i.e. a wrong shape)."""

    name: str
    arguments: dict[str, Any] | str


@dataclass
class Hold:
    """Requests whose body `matches` are held (received and recorded, not answered) until
    `release()`: a test decides when the 'model' answers, instead of guessing a delay."""

    matches: Callable[[Any], bool]
    _arrived: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)

    async def arrived(self, timeout: float = WAIT) -> None:  # noqa: ASYNC109
        """Wait until a matching request is being held."""
        if not await asyncio.to_thread(self._arrived.wait, timeout):
            raise TimeoutError(f"no held request arrived within {timeout:g}s")

    def release(self) -> None:
        self._released.set()


def _tool_input(arguments: dict[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return parsed if isinstance(parsed, dict) else {"_raw": arguments}


def last_user_text(body: dict[str, Any]) -> str:
    """Text of the last user message of a chat request body, in either vendor's format."""
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
    return ""


def echo_reply(body: dict[str, Any]) -> str:
    """The default reply: shows which user message reached the 'model'."""
    return f"echo: {last_user_text(body)}"


def fake_embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for `text`; a hash, so similar texts are NOT close."""
    rng = random.Random(hashlib.sha256(text.encode("utf-8")).digest())
    raw = [rng.gauss(0.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _tokens(obj: Any) -> int:
    return len(json.dumps(obj).split())  # a stand-in count; only has to be plausible


def _pieces(text: str) -> list[str]:
    """`text` cut for streaming; the pieces join to `text` exactly ([] for "")."""
    return _PIECE.findall(text)


def _sse(data: Any, event: str | None = None) -> bytes:
    """One Server-Sent Events record. JSON in raw UTF-8, as the vendors send it."""
    line = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "").encode() + f"data: {line}\n\n".encode()


@dataclass
class _Stream:
    """A streamed reply, as SSE records: `head` goes out at once, then `pieces` (paced), then
    `tail`; a broken stream sends `error` in place of the rest. `text` (a text reply's) is
    recorded in `FakeLLM.streamed` once all the pieces are sent, before the tail."""

    head: list[bytes]
    pieces: list[bytes]
    tail: list[bytes]
    error: bytes
    text: str | None


class FakeLLM(ThreadedServer):
    """Both vendors on one 127.0.0.1 port; see the module docstring."""

    def __init__(self, reply: Callable[[dict[str, Any]], str | ToolUse] = echo_reply) -> None:
        super().__init__()
        self.reply = reply
        # Seconds each response is held back; or a function of the request body.
        self.delay: float | Callable[[Any], float] = 0.0
        # Streaming pace: seconds before a stream's first piece; pieces per second after it.
        self.first_token_delay = 0.0
        self.tokens_per_second: float | None = None  # None: no pause between pieces
        self.streamed: list[str] = []  # text replies streamed in full, in order
        self.retry_after_ms = 1  # sent with errors so SDK retries don't back off for seconds
        self.default_embedding_dims = 1536  # used when a request sends no `dimensions`
        self.requests: list[Received] = []
        self.holds: list[Hold] = []
        self._failures: deque[tuple[int, str | None, str | None]] = deque()
        # Each next stream: pieces it sends before it breaks, and whether the connection drops.
        self._breaks: deque[tuple[int, bool]] = deque()
        self._ids = itertools.count(1)

    @property
    def anthropic_url(self) -> str:
        """Base URL for `anthropic` clients: the SDK appends `/v1/messages` itself."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_url(self) -> str:
        """Base URL for `openai` clients: theirs includes `/v1` (the SDK appends `/embeddings`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        error_type: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next `times` requests with a vendor-shaped error instead of a reply."""
        self._failures.extend([(status, error_type, message)] * times)

    def break_stream(self, after_pieces: int, *, times: int = 1, drop: bool = False) -> None:
        """Break the next `times` streamed replies: each sends its first `after_pieces` pieces
        (all, if it has fewer), then a vendor-shaped error event, and ends there. `drop`:
        no error event; the connection is cut instead, as a network failure would."""
        self._breaks.extend([(after_pieces, drop)] * times)

    def hold(self, matches: Callable[[Any], bool]) -> Hold:
        """Hold back the answers to requests whose body `matches` until `release()`."""
        self.holds.append(held := Hold(matches))
        return held

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def chat_requests(self, path: str = "/v1/messages") -> list[dict[str, Any]]:
        """Bodies of plain chat requests (replies to users), not tool calls."""
        return [r.body for r in self.requests_to(path) if not r.body.get("tools")]

    def tool_requests(self, path: str = "/v1/messages") -> list[dict[str, Any]]:
        """Bodies of requests that force a tool call (memory extraction, merges)."""
        return [r.body for r in self.requests_to(path) if r.body.get("tools")]

    # -- lifecycle -------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/{endpoint:.+}", self._handle)
        return app

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(Received(request.path, headers, body))
        vendor = "anthropic" if request.path == "/v1/messages" else "openai"
        for held in [h for h in self.holds if isinstance(body, dict) and h.matches(body)]:
            held._arrived.set()
            # Released from the test's thread (a threading.Event): polled, not awaited.
            while not held._released.is_set() and not self._stopping_now():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        await self._pause(self.delay(body) if callable(self.delay) else self.delay)
        if self._failures:
            return self._error(vendor, *self._failures.popleft())
        routes = {
            "/v1/messages": self._messages,
            "/v1/chat/completions": self._chat,
            "/v1/embeddings": self._embeddings,
        }
        if request.path not in routes:
            return self._error(vendor, 404, None, f"unknown path {request.path}")
        if not isinstance(body, dict) or "model" not in body:
            return self._error(vendor, 400, None, "body must be a JSON object with a model")
        answer = routes[request.path](body)
        if isinstance(answer, _Stream):
            return await self._send_stream(request, answer)
        return answer

    def _stopping_now(self) -> bool:
        return self._stopping is None or self._stopping.is_set()

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less if the fake is closing: closing cuts every pause short."""
        if seconds > 0 and self._stopping is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _send_stream(self, request: web.Request, stream: _Stream) -> web.StreamResponse:
        """Write `stream` as `text/event-stream`, pacing its pieces (`first_token_delay`,
        `tokens_per_second`) and breaking it if `break_stream` asked for that."""
        response = web.StreamResponse(
            headers={"cache-control": "no-cache", "request-id": f"req_fake{next(self._ids)}"}
        )
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        breaks_after, drop = self._breaks.popleft() if self._breaks else (None, False)
        gap = 1.0 / self.tokens_per_second if self.tokens_per_second else 0.0
        try:
            await response.prepare(request)
            for record in stream.head:
                await response.write(record)
            for sent, record in enumerate(stream.pieces):
                if sent == breaks_after:
                    break
                await self._pause(self.first_token_delay if sent == 0 else gap)
                await response.write(record)
            if breaks_after is not None and drop:
                if request.transport is not None:
                    request.transport.close()  # mid-body: the client reads a cut response
                return response
            if breaks_after is not None:
                await response.write(stream.error)
            else:
                # Recorded before the end goes out, so a client that has seen the end of the
                # stream finds the text here without waiting for this thread.
                if stream.text is not None:
                    self.streamed.append(stream.text)
                for record in stream.tail:
                    await response.write(record)
            await response.write_eof()
        except ConnectionResetError:  # the client went away mid-stream
            pass
        return response

    def _error(
        self, vendor: str, status: int, kind: str | None, message: str | None
    ) -> web.Response:
        message = message or f"fake {status} error"
        fallback = "invalid_request_error" if status < 500 else "server_error"
        if vendor == "anthropic" and status >= 500:
            fallback = "api_error"
        kind = kind or _ERROR_TYPES[vendor].get(status, fallback)
        if vendor == "anthropic":
            payload: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
        else:
            payload = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        headers = {"retry-after-ms": str(self.retry_after_ms), "request-id": f"req_{status}"}
        return web.json_response(payload, status=status, headers=headers)

    def _messages(self, body: dict[str, Any]) -> web.Response | _Stream:
        if "max_tokens" not in body or not body.get("messages"):
            return self._error("anthropic", 400, None, "max_tokens and messages are required")
        answer = self.reply(body)
        tool = isinstance(answer, ToolUse)
        block: dict[str, Any]
        if isinstance(answer, ToolUse):
            tool_input = _tool_input(answer.arguments)
            text = json.dumps(tool_input)
            block = {
                "type": "tool_use",
                "id": f"toolu_fake{next(self._ids)}",
                "name": answer.name,
                "input": tool_input,
            }
        else:
            text = answer
            block = {"type": "text", "text": text}
        usage = {
            "input_tokens": _tokens([body.get("system"), body["messages"]]),
            "output_tokens": _tokens(text),
        }
        message = {
            "id": f"msg_fake{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "content": [block],
            "model": body["model"],
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        if not body.get("stream"):
            return web.json_response(message)

        def event(kind: str, **fields: Any) -> bytes:
            return _sse({"type": kind, **fields}, event=kind)

        # The block opens empty and its text (or the tool's input, as JSON) comes in deltas.
        opened = {**block, "input": {}} if tool else {**block, "text": ""}
        delta = {"type": "input_json_delta"} if tool else {"type": "text_delta"}
        key = "partial_json" if tool else "text"
        started = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        return _Stream(
            head=[
                event("message_start", message=started),
                event("content_block_start", index=0, content_block=opened),
                event("ping"),
            ],
            pieces=[
                event("content_block_delta", index=0, delta={**delta, key: part})
                for part in _pieces(text)
            ],
            tail=[
                event("content_block_stop", index=0),
                event(
                    "message_delta",
                    delta={"stop_reason": message["stop_reason"], "stop_sequence": None},
                    usage=usage,
                ),
                event("message_stop"),
            ],
            error=event("error", error={"type": "overloaded_error", "message": "Overloaded"}),
            text=None if tool else text,
        )

    def _chat(self, body: dict[str, Any]) -> web.Response | _Stream:
        answer = self.reply(body)
        tool = isinstance(answer, ToolUse)
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None}
        if isinstance(answer, ToolUse):
            arguments = answer.arguments
            text = arguments if isinstance(arguments, str) else json.dumps(arguments)
            call = {"id": f"call_fake{next(self._ids)}", "type": "function"}
            message["content"] = None
            message["tool_calls"] = [{**call, "function": {"name": answer.name, "arguments": text}}]
            # Streamed, the call's id and name come first, then its arguments in pieces.
            opened = {"index": 0, **call, "function": {"name": answer.name, "arguments": ""}}
            first = {**message, "tool_calls": [opened]}
        else:
            text = answer
            first = {**message, "content": ""}
        finish_reason = "tool_calls" if tool else "stop"
        prompt, completion = _tokens(body.get("messages")), _tokens(text)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        reply = {
            "id": f"chatcmpl-fake{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
        }
        if not body.get("stream"):
            choice = {"index": 0, "finish_reason": finish_reason, "logprobs": None}
            return web.json_response(
                {**reply, "choices": [{**choice, "message": message}], "usage": usage}
            )

        # Every chunk carries `usage` (null but in the last) iff the request asked for it.
        with_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, **totals: Any) -> bytes:
            """A chunk of the one choice; with `delta` None, the closing usage chunk."""
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            data = {
                **reply,
                "object": "chat.completion.chunk",
                "choices": [] if delta is None else [choice],
            }
            return _sse({**data, "usage": totals or None} if with_usage else data)

        def piece(part: str) -> bytes:
            if tool:
                return chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
            return chunk({"content": part})

        error = {
            "message": "fake stream error",
            "type": "server_error",
            "param": None,
            "code": None,
        }
        return _Stream(
            head=[chunk(first)],
            pieces=[piece(part) for part in _pieces(text)],
            tail=[
                chunk({}, finish_reason),
                *([chunk(None, **usage)] if with_usage else []),
                _sse("[DONE]"),
            ],
            error=_sse({"error": error}),
            text=None if tool else text,
        )

    def _embeddings(self, body: dict[str, Any]) -> web.Response:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        # Like the real API: no empty strings, at most 2048 inputs per request.
        if (
            not isinstance(inputs, list)
            or not 0 < len(inputs) <= 2048
            or not all(isinstance(t, str) and t for t in inputs)
        ):
            return self._error("openai", 400, None, "'$.input' is invalid.")
        dims = body.get("dimensions", self.default_embedding_dims)
        data = []
        for index, text in enumerate(inputs):
            vector: Any = fake_embedding(text, dims)
            if body.get("encoding_format") == "base64":  # the SDK asks for this by default
                vector = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        usage = _tokens(inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": usage, "total_tokens": usage},
            }
        )
