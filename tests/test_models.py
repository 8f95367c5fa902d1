"""Chat models: the real vendor SDKs against the local fake API, and the offline model.

Nothing of ours is mocked: `AnthropicChat` and `OpenAIChat` go through the installed
`anthropic` / `openai` SDKs (their retries, timeouts and error classes included) to
`tests/fakes/llm.py`, and the assertions read what that server received.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from engine.memory.recall import Recalled
from engine.models import (
    AnthropicChat,
    ChatModel,
    ModelError,
    OfflineChat,
    OpenAIChat,
    Prompt,
    make_chat_model,
    to_second_person,
)
from engine.settings import Settings
from tests.fakes.llm import FakeLLM

ANTHROPIC_KEY = "sk-ant-test-0123456789abcdef"
OPENAI_KEY = "sk-proj-test-fedcba9876543210"


def make_settings(fake: FakeLLM | None = None, **overrides: object) -> Settings:
    """Settings from arguments only: no `.env` file and no vendor defaults that could reach out."""
    values: dict[str, object] = {
        "anthropic_api_key": ANTHROPIC_KEY,
        "openai_api_key": OPENAI_KEY,
        "anthropic_model": "claude-test-1",
        "openai_model": "gpt-test-mini",
        "llm_max_tokens": 321,
        "llm_timeout_seconds": 60.0,  # only a hang guard: the fake answers at once
    }
    if fake is not None:
        values |= {"anthropic_base_url": fake.anthropic_url, "openai_base_url": fake.openai_url}
    values |= overrides
    return Settings(_env_file=None, **values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


def prompt(
    *messages: BaseMessage, system: str = "You are membot.", memories: list[str] | None = None
) -> Prompt:
    texts = enumerate(memories or [])
    recalled = [Recalled(f"k{n}", text, "fact", None, None) for n, text in texts]
    return Prompt(system=system, memories=recalled, messages=list(messages))


def assert_key_free(err: ModelError, key: str) -> None:
    """The key is in neither the message, the repr, nor a full logged traceback."""
    logged = "".join(traceback.format_exception(err))
    assert key not in str(err)
    assert key not in repr(err)
    assert key not in logged


# -- Anthropic -----------------------------------------------------------------------------


async def test_anthropic_request_and_reply(fake: FakeLLM) -> None:
    fake.reply = lambda body: "Your name is Bob."
    chat = AnthropicChat(make_settings(fake))
    conversation = prompt(
        AIMessage("Hi, I'm membot."),  # a leading bot turn: Anthropic must start with the user
        HumanMessage("hello"),
        HumanMessage("   "),  # empty: skipped
        HumanMessage([{"type": "text", "text": "second part"}]),  # merged with "hello"
        AIMessage("Hello!"),
        AIMessage(""),
        SystemMessage("not a turn"),  # the system prompt travels separately
        HumanMessage("what is my name?"),
        system="SYSTEM PROMPT with memories: My name is Bob.",
    )
    reply = await chat.ainvoke(conversation)
    await chat.aclose()

    [request] = fake.requests
    assert request.path == "/v1/messages"
    assert request.body["model"] == "claude-test-1"
    assert request.body["max_tokens"] == 321
    assert request.body["system"] == "SYSTEM PROMPT with memories: My name is Bob."
    assert request.body["messages"] == [
        {"role": "user", "content": "hello\n\nsecond part"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "what is my name?"},
    ]
    # This SDK sends the key as a bearer token; older ones used x-api-key. Either is fine.
    auth = {request.headers.get("x-api-key"), request.headers.get("authorization")}
    assert auth & {ANTHROPIC_KEY, f"Bearer {ANTHROPIC_KEY}"}
    assert "anthropic-version" in request.headers

    assert isinstance(reply, AIMessage)
    assert reply.content == "Your name is Bob."
    assert reply.response_metadata["model"] == "anthropic:claude-test-1"
    assert reply.response_metadata["offline"] is False
    assert reply.response_metadata["stop_reason"] == "end_turn"
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] > 0
    assert chat.name == "anthropic:claude-test-1" and chat.offline is False


async def test_anthropic_without_system_prompt_omits_it(fake: FakeLLM) -> None:
    chat = AnthropicChat(make_settings(fake))
    reply = await chat.ainvoke(prompt(HumanMessage("hi"), system=""))
    await chat.aclose()
    assert "system" not in fake.requests[0].body
    assert reply.content == "echo: hi"


async def test_anthropic_overloaded_after_retries_is_model_error(fake: FakeLLM) -> None:
    fake.fail(529, times=3)
    chat = AnthropicChat(make_settings(fake))  # the SDK's default: 2 retries
    with pytest.raises(ModelError) as caught:
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert len(fake.requests_to("/v1/messages")) == 3  # first try + 2 SDK retries
    err = caught.value
    assert (err.provider, err.status_code, err.error_type) == ("anthropic", 529, "overloaded_error")
    assert "529" in str(err) and "overloaded_error" in str(err)
    assert_key_free(err, ANTHROPIC_KEY)


async def test_anthropic_recovers_when_a_retry_succeeds(fake: FakeLLM) -> None:
    fake.fail(529)
    chat = AnthropicChat(make_settings(fake))
    reply = await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert reply.content == "echo: hi"
    assert len(fake.requests) == 2


async def test_anthropic_timeout_is_model_error(fake: FakeLLM) -> None:
    fake.hold(lambda body: True)  # the model never answers (however slow this machine is)
    chat = AnthropicChat(make_settings(fake, llm_timeout_seconds=0.3), max_retries=0)
    with pytest.raises(ModelError, match=r"no response within 0\.3s") as caught:
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert caught.value.error_type == "timeout"


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
async def test_auth_error_never_leaks_the_key(fake: FakeLLM, vendor: str) -> None:
    # Real vendors quote (part of) a rejected key in the error body; it must not reach logs.
    key = ANTHROPIC_KEY if vendor == "anthropic" else OPENAI_KEY
    fake.fail(401, message=f"invalid x-api-key: {key}")
    settings = make_settings(fake)
    chat = AnthropicChat(settings) if vendor == "anthropic" else OpenAIChat(settings)
    with pytest.raises(ModelError) as caught:
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert len(fake.requests) == 1  # 401 is not retried
    assert caught.value.status_code == 401
    assert_key_free(caught.value, key)


async def test_unreachable_server_is_model_error() -> None:
    async with FakeLLM() as gone:
        settings = make_settings(gone)
    chat = AnthropicChat(settings, max_retries=0)
    with pytest.raises(ModelError, match="connection failed") as caught:
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert caught.value.error_type == "connection"


async def test_prompt_without_user_message_is_rejected_before_any_request(fake: FakeLLM) -> None:
    chat = AnthropicChat(make_settings(fake))
    with pytest.raises(ValueError, match="no non-empty user message"):
        await chat.ainvoke(prompt(AIMessage("only me"), HumanMessage("  ")))
    await chat.aclose()
    assert fake.requests == []


# -- OpenAI --------------------------------------------------------------------------------


async def test_openai_request_and_reply(fake: FakeLLM) -> None:
    fake.reply = lambda body: "You like green tea."
    chat = OpenAIChat(make_settings(fake))
    reply = await chat.ainvoke(
        prompt(
            AIMessage("Hi, I'm membot."),
            HumanMessage("hello"),
            HumanMessage(""),
            HumanMessage("what do I like?"),
            system="SYSTEM with memories",
        )
    )
    await chat.aclose()

    [request] = fake.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.body["model"] == "gpt-test-mini"
    assert request.body["max_completion_tokens"] == 321
    assert "max_tokens" not in request.body
    # One conversation shape for both vendors: the user first, one message per turn.
    assert request.body["messages"] == [
        {"role": "system", "content": "SYSTEM with memories"},
        {"role": "user", "content": "hello\n\nwhat do I like?"},
    ]
    assert request.body["stream"] is True  # the answer is streamed
    assert reply.content == "You like green tea."
    assert reply.response_metadata["model"] == "openai:gpt-test-mini"
    assert reply.response_metadata["offline"] is False
    assert reply.response_metadata["finish_reason"] == "stop"
    usage = reply.usage_metadata
    assert usage is not None
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0


@pytest.mark.parametrize(("status", "kind"), [(500, "server_error"), (429, "requests")])
async def test_openai_failure_after_retries_is_model_error(
    fake: FakeLLM, status: int, kind: str
) -> None:
    fake.fail(status, times=3)
    chat = OpenAIChat(make_settings(fake))
    with pytest.raises(ModelError) as caught:
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()
    assert len(fake.requests_to("/v1/chat/completions")) == 3
    assert (caught.value.status_code, caught.value.error_type) == (status, kind)
    assert str(status) in str(caught.value)
    assert_key_free(caught.value, OPENAI_KEY)


async def test_openai_timeout_is_model_error(fake: FakeLLM) -> None:
    fake.hold(lambda body: True)  # the model never answers (however slow this machine is)
    chat = OpenAIChat(make_settings(fake, llm_timeout_seconds=0.3), max_retries=0)
    with pytest.raises(ModelError, match=r"no response within 0\.3s"):
        await chat.ainvoke(prompt(HumanMessage("hi")))
    await chat.aclose()


# -- choosing a model ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, AnthropicChat),
        ({"anthropic_api_key": None}, OpenAIChat),
        ({"anthropic_api_key": None, "openai_api_key": None}, OfflineChat),
        ({"llm_provider": "openai"}, OpenAIChat),
        ({"llm_provider": "offline"}, OfflineChat),
    ],
)
def test_make_chat_model_follows_settings(overrides: dict[str, object], expected: type) -> None:
    model = make_chat_model(make_settings(**overrides))
    assert type(model) is expected
    assert isinstance(model, ChatModel)


def test_forced_provider_without_key_is_model_error() -> None:
    settings = make_settings(llm_provider="anthropic", anthropic_api_key=None)
    with pytest.raises(ModelError, match="ANTHROPIC_API_KEY"):
        make_chat_model(settings)


# -- offline -------------------------------------------------------------------------------


async def offline(text: str, memories: list[str] | None = None) -> AIMessage:
    return await OfflineChat().ainvoke(prompt(HumanMessage(text), memories=memories))


def assert_offline_labelled(reply: AIMessage) -> None:
    assert isinstance(reply.content, str) and reply.content.startswith("[offline] ")
    assert reply.response_metadata == {"model": "offline", "offline": True}


async def test_offline_answers_from_the_best_memory() -> None:
    reply = await offline("what is my name?", ["My name is Bob."])
    assert_offline_labelled(reply)
    assert "Your name is Bob" in reply.content
    assert "also remember" not in reply.content


async def test_offline_states_one_memory_only() -> None:
    """The best match answers; the others may be stale or beside the point, so they are
    not appended."""
    memories = ["My name is Bob.", "I like green tea.", "I'm a vegetarian.", "I live in Oslo."]
    reply = await offline("what is my name?", memories)
    assert_offline_labelled(reply)
    content = str(reply.content)
    assert "Your name is Bob" in content
    assert "tea" not in content and "vegetarian" not in content and "Oslo" not in content


async def test_offline_question_without_memories_admits_it_does_not_know() -> None:
    reply = await offline("What is my name?")
    assert_offline_labelled(reply)
    content = str(reply.content)
    assert "don't know" in content and "offline" in content
    assert "Tell me, e.g. 'remember: " in content  # how to teach it
    assert "Your" not in content and "Bob" not in content  # nothing invented


@pytest.mark.parametrize("text", ["I like green tea.", "My name is Bob", "call me Bobby"])
async def test_offline_statement_is_acknowledged(text: str) -> None:
    reply = await offline(text, ["I'm a vegetarian."])
    assert_offline_labelled(reply)
    content = str(reply.content)
    assert "Noted" in content and "offline" in content
    assert "vegetarian" not in content  # a statement is not answered with memories


async def test_offline_uses_the_last_human_message() -> None:
    chat = OfflineChat()
    reply = await chat.ainvoke(
        prompt(
            HumanMessage("I like tea."),
            AIMessage("ok"),
            HumanMessage("remind me my name"),
            memories=["My name is Bob."],
        )
    )
    assert "Your name is Bob" in reply.content
    assert chat.offline is True and chat.name == "offline"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("My name is Bob.", "Your name is Bob."),
        ("I like green tea.", "You like green tea."),
        ("I'm a vegetarian.", "You're a vegetarian."),
        ("I am allergic to nuts.", "You are allergic to nuts."),
        ("I was born in Oslo.", "You were born in Oslo."),
        ("Call me Bobby.", "You'd like to be called Bobby."),
        ("That bike is mine.", "That bike is yours."),
        ("I taught myself to code.", "You taught yourself to code."),
        (
            "My sister and I went; she gave me a map.",
            "Your sister and you went; she gave you a map.",
        ),
        ("Amy emailed me about Mimi.", "Amy emailed you about Mimi."),  # word boundaries
        ("i like tea", "You like tea"),
        ("I’m vegan and I’ve a cat.", "You’re vegan and you’ve a cat."),
        ("MY NAME IS BOB", "YOUR NAME IS BOB"),
        ("He said I'd win. I'll see.", "He said you'd win. You'll see."),
        ('"My dog" is Rex.', '"Your dog" is Rex.'),
        ("You like tea.", "You like tea."),
    ],
)
def test_to_second_person(first: str, second: str) -> None:
    assert to_second_person(first) == second


_WORDS = [
    "I",
    "me",
    "my",
    "mine",
    "myself",
    "I'm",
    "I am",
    "tea",
    "Bob",
    "Amy",
    "and",
    "likes",
    "mimic",
    "Irma",
    "is",
    ".",
]


@given(st.lists(st.sampled_from(_WORDS), max_size=12))
def test_to_second_person_leaves_no_first_person(words: list[str]) -> None:
    text = " ".join(words)
    result = to_second_person(text)
    assert not re.search(r"\b(I|me|my|mine|myself)\b", result)
    # Everything that was not a first-person word survives untouched.
    kept = [w for w in words if w in {"tea", "Bob", "Amy", "mimic", "Irma"}]
    assert [w for w in result.split() if w in {"tea", "Bob", "Amy", "mimic", "Irma"}] == kept
