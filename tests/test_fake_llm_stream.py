"""Streaming in the fake LLM API, checked the only way that means anything: the real
`anthropic` and `openai` SDKs, and LangChain's chat models on top of them, parse it.

What the SDKs see is what a bot streaming a reply would see: the pieces join to the reply
byte for byte, tool calls arrive whole, usage comes when asked for, a broken stream raises
after the pieces already sent, and the pace (`first_token_delay`, `tokens_per_second`) holds.
Times are asserted as lower bounds only: a loaded machine makes a stream slower, never faster.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from functools import reduce
from operator import add
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessageChunk, BaseMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from tests.fakes.llm import FakeLLM, ToolUse
from tests.fakes.waits import WAIT, eventually

# Leading and trailing spaces, newlines, a tab, non-ASCII up to 4-byte UTF-8.
TRICKY = "  héllo — 你好 🙂\n\nsecond  line\twith\ttabs \n "
LONG = "one two three four five six seven eight nine ten eleven"
REPLIES = [TRICKY, LONG, "single", "", "   \n  "]
ARGS = {"facts": ["likes tea", "lives in Zürich — 🙂"], "score": 3}


class Save(BaseModel):
    """Save facts about the user."""

    facts: list[str]
    score: int


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+|\s+", text)


@pytest.fixture
async def anthropic_client(fake: FakeLLM) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        api_key="k", base_url=fake.anthropic_url, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def openai_client(fake: FakeLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(api_key="k", base_url=fake.openai_url, max_retries=0) as client:
        yield client


def chat_anthropic(fake: FakeLLM, **kwargs: Any) -> ChatAnthropic:
    return ChatAnthropic(
        model="claude-x", api_key="k", base_url=fake.anthropic_url, max_retries=0, **kwargs
    )


def chat_openai(fake: FakeLLM, **kwargs: Any) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-x", api_key="k", base_url=fake.openai_url, max_retries=0, **kwargs)


def chat_model(vendor: str, fake: FakeLLM, **kwargs: Any) -> ChatAnthropic | ChatOpenAI:
    return chat_anthropic(fake, **kwargs) if vendor == "anthropic" else chat_openai(fake, **kwargs)


ASK = [{"role": "user", "content": "hi"}]


# -- the wire ------------------------------------------------------------------------------


async def post_raw(url: str, body: dict[str, Any]) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200
        return response.headers["content-type"], await response.read()


async def test_anthropic_wire_format(fake: FakeLLM) -> None:
    fake.reply = lambda body: "hi there"
    body = {"model": "m", "max_tokens": 5, "messages": ASK, "stream": True}
    content_type, raw = await post_raw(f"{fake.anthropic_url}/v1/messages", body)
    assert content_type.startswith("text/event-stream")
    records = raw.decode().split("\n\n")
    assert records.pop() == ""  # every record ends in a blank line
    events = []
    for record in records:
        event_line, data_line = record.split("\n")
        kind = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == kind
        events.append(data)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0]["message"]["content"] == []
    assert events[0]["message"]["usage"]["input_tokens"] > 0
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in events[3:5]] == [
        {"type": "text_delta", "text": "hi"},
        {"type": "text_delta", "text": " there"},
    ]
    assert events[6]["delta"]["stop_reason"] == "end_turn"
    assert events[6]["usage"]["output_tokens"] > 0


async def test_openai_wire_format(fake: FakeLLM) -> None:
    fake.reply = lambda body: "hi there"
    body = {"model": "m", "messages": ASK, "stream": True}
    content_type, raw = await post_raw(f"{fake.openai_url}/chat/completions", body)
    assert content_type.startswith("text/event-stream")
    records = raw.decode().split("\n\n")
    assert records.pop() == ""
    assert all(r.startswith("data: ") and "\n" not in r for r in records)
    assert records.pop() == "data: [DONE]"
    chunks = [json.loads(r.removeprefix("data: ")) for r in records]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert all("usage" not in c for c in chunks)  # not asked for
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": "", "refusal": None}
    assert deltas[1:] == [{"content": "hi"}, {"content": " there"}, {}]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "stop"]


# -- text, through the SDKs ----------------------------------------------------------------


@pytest.mark.parametrize("reply", REPLIES)
async def test_anthropic_sdk_streams_text(
    fake: FakeLLM, anthropic_client: anthropic.AsyncAnthropic, reply: str
) -> None:
    fake.reply = lambda body: reply
    stream = await anthropic_client.messages.create(
        model="claude-x", max_tokens=50, messages=ASK, stream=True
    )
    deltas = [
        event.delta.text
        async for event in stream
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]
    assert "".join(deltas) == reply
    assert deltas == pieces(reply)
    # The SDK's own accumulator (`messages.stream`) builds the same message.
    async with anthropic_client.messages.stream(
        model="claude-x", max_tokens=50, messages=ASK
    ) as helper:
        texts = [text async for text in helper.text_stream]
        final = await helper.get_final_message()
    assert "".join(texts) == reply
    assert final.content[0].type == "text"
    assert final.content[0].text == reply
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert fake.streamed == [reply, reply]


@pytest.mark.parametrize("reply", REPLIES)
async def test_openai_sdk_streams_text(
    fake: FakeLLM, openai_client: openai.AsyncOpenAI, reply: str
) -> None:
    fake.reply = lambda body: reply
    stream = await openai_client.chat.completions.create(model="gpt-x", messages=ASK, stream=True)
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(deltas) == reply
    assert deltas == [p for p in pieces(reply) if p]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    # The SDK's own accumulator (`chat.completions.stream`) builds the same completion.
    async with openai_client.chat.completions.stream(model="gpt-x", messages=ASK) as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_completion()
    assert final.choices[0].message.content == reply
    assert final.choices[0].finish_reason == "stop"
    assert fake.streamed == [reply, reply]


async def test_openai_include_usage(fake: FakeLLM, openai_client: openai.AsyncOpenAI) -> None:
    fake.reply = lambda body: LONG
    stream = await openai_client.chat.completions.create(
        model="gpt-x", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == LONG


# -- text, through LangChain ---------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
@pytest.mark.parametrize("reply", [TRICKY, LONG])
async def test_langchain_astream_text(fake: FakeLLM, vendor: str, reply: str) -> None:
    fake.reply = lambda body: reply
    model = chat_model(vendor, fake)
    chunks = [chunk async for chunk in model.astream("hi")]
    texts = [c.content for c in chunks if c.content]
    assert all(isinstance(t, str) for t in texts)
    assert "".join(texts) == reply  # type: ignore[arg-type]
    assert len(texts) > 1
    assert fake.streamed == [reply]
    assert fake.requests[-1].body["stream"] is True


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_langchain_streaming_ainvoke_text(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: TRICKY
    answer = await chat_model(vendor, fake, streaming=True).ainvoke("hi")
    assert answer.content == TRICKY
    assert fake.requests[-1].body["stream"] is True
    assert fake.streamed == [TRICKY]


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_langchain_stream_usage(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: LONG
    model = chat_model(vendor, fake, stream_usage=True)
    chunks = [chunk async for chunk in model.astream("hi")]
    message = reduce(add, chunks)
    assert isinstance(message, AIMessageChunk)
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] > 0
    assert message.usage_metadata["output_tokens"] > 0
    if vendor == "openai":
        assert fake.requests[-1].body["stream_options"] == {"include_usage": True}


# -- tool calls ----------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_langchain_tool_call_streaming_ainvoke(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: ToolUse("Save", ARGS)
    model = chat_model(vendor, fake, streaming=True).bind_tools([Save], tool_choice="Save")
    answer = await model.ainvoke("remember this")
    assert fake.requests[-1].body["stream"] is True
    assert fake.requests[-1].body["tools"]
    assert len(answer.tool_calls) == 1  # type: ignore[attr-defined]
    call = answer.tool_calls[0]  # type: ignore[attr-defined]
    assert call["name"] == "Save"
    assert call["args"] == ARGS
    assert call["id"]
    assert fake.streamed == []  # only text replies are recorded


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_langchain_tool_call_astream(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: ToolUse("Save", ARGS)
    model = chat_model(vendor, fake).bind_tools([Save], tool_choice="Save")
    chunks: list[BaseMessageChunk] = [chunk async for chunk in model.astream("remember this")]
    with_args = [c for c in chunks if getattr(c, "tool_call_chunks", None)]
    assert len(with_args) > 2  # the header, then the arguments in more than one piece
    message = reduce(add, chunks)
    assert isinstance(message, AIMessageChunk)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("Save", ARGS)]


async def test_anthropic_sdk_tool_call(
    fake: FakeLLM, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    fake.reply = lambda body: ToolUse("Save", ARGS)
    async with anthropic_client.messages.stream(
        model="claude-x", max_tokens=50, messages=ASK
    ) as stream:
        partial = [event.partial_json async for event in stream if event.type == "input_json"]
        final = await stream.get_final_message()
    assert "".join(partial) == json.dumps(ARGS)
    assert len(partial) > 1
    block = final.content[0]
    assert block.type == "tool_use"
    assert (block.name, block.input) == ("Save", ARGS)
    assert final.stop_reason == "tool_use"


async def test_openai_sdk_tool_call(fake: FakeLLM, openai_client: openai.AsyncOpenAI) -> None:
    fake.reply = lambda body: ToolUse("Save", ARGS)
    async with openai_client.chat.completions.stream(model="gpt-x", messages=ASK) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id
    assert call.function.name == "Save"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == ARGS  # type: ignore[union-attr]


async def test_openai_malformed_arguments_streamed_verbatim(
    fake: FakeLLM, openai_client: openai.AsyncOpenAI
) -> None:
    fake.reply = lambda body: ToolUse("Save", '{"facts": [oops')
    stream = await openai_client.chat.completions.create(model="gpt-x", messages=ASK, stream=True)
    arguments = ""
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            arguments += call.function.arguments or ""  # type: ignore[union-attr]
    assert arguments == '{"facts": [oops'


# -- broken streams ------------------------------------------------------------------------


async def test_anthropic_sdk_break_stream(
    fake: FakeLLM, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    fake.reply = lambda body: LONG
    fake.break_stream(2)
    stream = await anthropic_client.messages.create(
        model="claude-x", max_tokens=50, messages=ASK, stream=True
    )
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as raised:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                received.append(event.delta.text)
    assert received == pieces(LONG)[:2]
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert fake.streamed == []
    # Only the next stream was broken: this one is whole, and recorded.
    answer = await chat_anthropic(fake, streaming=True).ainvoke("again")
    assert answer.content == LONG
    assert fake.streamed == [LONG]


async def test_openai_sdk_break_stream(fake: FakeLLM, openai_client: openai.AsyncOpenAI) -> None:
    fake.reply = lambda body: LONG
    fake.break_stream(2)
    stream = await openai_client.chat.completions.create(model="gpt-x", messages=ASK, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "".join(pieces(LONG)[:2])
    assert raised.value.message == "fake stream error"
    assert fake.streamed == []


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_langchain_break_stream(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: LONG
    fake.break_stream(2, times=2)
    model = chat_model(vendor, fake)
    received: list[str] = []
    with pytest.raises((anthropic.APIError, openai.APIError)):
        async for chunk in model.astream("hi"):
            received.append(str(chunk.content))
    assert "".join(received) == "".join(pieces(LONG)[:2])
    with pytest.raises((anthropic.APIError, openai.APIError)):
        await chat_model(vendor, fake, streaming=True).ainvoke("hi")
    answer = await model.ainvoke("hi")  # not streamed: break_stream does not apply
    assert answer.content == LONG
    assert fake.streamed == []
    answer = await chat_model(vendor, fake, streaming=True).ainvoke("hi")
    assert answer.content == LONG
    assert fake.streamed == [LONG]


async def test_break_after_more_pieces_than_there_are(fake: FakeLLM) -> None:
    fake.reply = lambda body: "two words"
    fake.break_stream(10)
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError):
        async for chunk in chat_anthropic(fake).astream("hi"):
            received.append(str(chunk.content))
    assert "".join(received) == "two words"
    assert fake.streamed == []


async def test_http_failure_comes_before_the_stream(
    fake: FakeLLM, anthropic_client: anthropic.AsyncAnthropic
) -> None:
    fake.fail(529)
    fake.break_stream(1)
    with pytest.raises(anthropic.OverloadedError):
        await anthropic_client.messages.create(
            model="claude-x", max_tokens=50, messages=ASK, stream=True
        )
    # The failure used no break: the next stream is the broken one.
    with pytest.raises(anthropic.APIStatusError):
        async for _ in chat_anthropic(fake).astream("hi"):
            pass


# -- pace ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_first_token_delay_and_rate(fake: FakeLLM, vendor: str) -> None:
    fake.reply = lambda body: LONG
    fake.first_token_delay = 0.3
    fake.tokens_per_second = 50
    arrivals: list[float] = []
    started = time.monotonic()
    async for chunk in chat_model(vendor, fake).astream("hi"):
        if chunk.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == len(pieces(LONG))
    # Lower bounds only (a small margin for timer rounding).
    assert arrivals[0] >= 0.29
    assert arrivals[-1] >= 0.29 + (len(arrivals) - 1) / 50 * 0.9
    assert fake.streamed == [LONG]


async def test_closing_cuts_the_pauses_short() -> None:
    fake = FakeLLM(reply=lambda body: LONG)
    await asyncio.to_thread(fake.start)
    try:
        fake.first_token_delay = 3600.0
        fake.tokens_per_second = 0.001
        model = chat_anthropic(fake, streaming=True)
        streaming = asyncio.create_task(model.ainvoke("hi"))
        await eventually(lambda: fake.requests, what="the request reached the fake")
    finally:
        await asyncio.to_thread(fake.close)
    # Closing the fake ended the pauses, so the stream was sent whole, not cut off.
    answer = await asyncio.wait_for(streaming, WAIT)
    assert answer.content == LONG
    assert fake.streamed == [LONG]


# -- plain requests are unchanged ----------------------------------------------------------


async def test_non_streaming_unaffected(
    fake: FakeLLM, anthropic_client: anthropic.AsyncAnthropic, openai_client: openai.AsyncOpenAI
) -> None:
    fake.reply = lambda body: TRICKY
    fake.first_token_delay = 3600.0  # would hang a stream; plain replies do not use it
    fake.break_stream(1)
    message = await anthropic_client.messages.create(model="claude-x", max_tokens=50, messages=ASK)
    assert message.content[0].text == TRICKY  # type: ignore[union-attr]
    completion = await openai_client.chat.completions.create(model="gpt-x", messages=ASK)
    assert completion.choices[0].message.content == TRICKY
    assert fake.streamed == []
