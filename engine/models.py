"""Chat models behind one small interface: Anthropic and OpenAI through LangChain's chat
models, and an offline stand-in that is a LangChain chat model too.

The workflow builds a `Prompt` (system prompt with the recalled memories rendered in, plus
the recent conversation) and streams the answer (`astream`: the text as the model writes
it) or awaits it whole (`ainvoke`). LangChain's `ChatAnthropic` / `ChatOpenAI` do the vendor
work: request shapes, streaming, tool calls, the SDKs' retries. What stays here is ours:
the conversation made valid for every vendor (roles alternate, the user speaks first),
one `ModelError` for every provider failure whose text never holds a key, the answer's
metadata (`model`, `offline`) and the model-call metrics.
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any, Literal, Protocol, runtime_checkable

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

from engine.memory.recall import Recalled
from engine.memory.relevance import DEFAULT_MIN_SCORE
from engine.metrics import llm_call, measure_llm
from engine.offline import offline_reply, to_second_person
from engine.settings import Settings

__all__ = [
    "AnthropicChat",
    "ChatModel",
    "ModelError",
    "OfflineChat",
    "OfflineChatModel",
    "OpenAIChat",
    "Prompt",
    "Tool",
    "ToolCallingModel",
    "answer_message",
    "make_chat_model",
    "message_text",
    "sdk_error",
    "to_second_person",
]


@dataclass(frozen=True)
class Prompt:
    """Everything a chat model needs for one reply."""

    system: str  # full system prompt, recalled memories already rendered in it
    # Recalled facts and episodes, best match first, with kinds and dates (the offline
    # model answers from these; a language model gets them rendered in `system`).
    memories: Sequence[Recalled]
    messages: list[BaseMessage]  # recent conversation; the last is the user's HumanMessage


@dataclass(frozen=True)
class Tool:
    """A function the model must call: how we get structured output from either vendor.

    `schema` is the JSON schema of the arguments object (e.g. a pydantic model's
    `model_json_schema()`). The caller validates what comes back; a model may still send
    arguments that do not fit.
    """

    name: str
    description: str
    schema: dict[str, Any]


class ModelError(Exception):
    """A provider failed (network, 5xx, overload, timeout, auth); str() is safe to log.

    The message is built only from the status code, the vendor's error type, the request id and
    exception class names, never from response bodies or SDK messages, which may echo request
    details (OpenAI's 401 quotes part of the key). It never contains the API key, and the SDK
    exception is not chained, so a logged traceback cannot leak one either.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status_code: int | None = None,
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.provider = provider  # "anthropic" or "openai"
        self.status_code = status_code  # HTTP status, when the vendor answered
        self.error_type = error_type  # vendor error type, or "timeout" / "connection" / ...


@runtime_checkable
class ChatModel(Protocol):
    name: str  # "anthropic:<model>", "openai:<model>", "offline"
    offline: bool

    def astream(self, prompt: Prompt) -> AsyncIterator[AIMessageChunk]:
        """The answer as the model writes it; `answer_message` joins the chunks."""
        ...

    async def ainvoke(self, prompt: Prompt) -> AIMessage: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ToolCallingModel(ChatModel, Protocol):
    """A chat model that can be forced to answer with one tool call (structured output)."""

    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        """The arguments the model passed to `tool`; `ModelError` if it failed or did not
        call it with a JSON object."""
        ...


def answer_message(model: ChatModel, chunks: Sequence[AIMessageChunk]) -> AIMessage:
    """The whole answer from its streamed chunks, labelled with the model that wrote it."""
    if not chunks:
        labels = {"model": model.name, "offline": model.offline}
        return AIMessage(content="", response_metadata=labels)
    whole = reduce(lambda a, b: a + b, chunks)
    metadata = {} if model.offline else dict(whole.response_metadata)
    return AIMessage(
        content=message_text(whole),
        id=whole.id,
        response_metadata={**metadata, "model": model.name, "offline": model.offline},
        usage_metadata=whole.usage_metadata,
    )


def _bad_tool_call(name: str, provider: str, why: str) -> ModelError:
    return ModelError(f"{name}: {why}", provider=provider, error_type="invalid_response")


# -- errors --------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _token(value: object) -> str | None:
    """A short identifier-like string from untrusted server data, or None."""
    if value is None:
        return None
    return _UNSAFE.sub("", str(value))[:64] or None


def _error_type(err: Any) -> str | None:
    kind = getattr(err, "type", None)  # newer SDKs parse it; older ones only keep the body
    body = getattr(err, "body", None)
    if kind is None and isinstance(body, dict):
        inner = body.get("error", body)
        kind = inner.get("type") if isinstance(inner, dict) else None
    return _token(kind)


def _sdk_classes(name: str) -> tuple[type[BaseException], ...]:
    """`name` (e.g. "APITimeoutError") of each vendor SDK already imported. An error from a
    vendor means its SDK is loaded, so nothing is imported here: importing `anthropic` on
    the event loop at the first error froze it for ~1.7 s."""
    modules = (sys.modules.get("anthropic"), sys.modules.get("openai"))
    found = (getattr(m, name, None) for m in modules if m is not None)
    return tuple(c for c in found if isinstance(c, type))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's network errors: a stream cut mid-body reaches LangChain's
    `ChatAnthropic` as one of these, not wrapped by the SDK (the SDKs wrap them only
    before the body). `anthropic` 2.x runs on `httpx2`, `openai` on `httpx`."""
    clients = (sys.modules.get("httpx"), sys.modules.get("httpx2"))
    found = (getattr(m, "TransportError", None) for m in clients if m is not None)
    return tuple(c for c in found if isinstance(c, type))


def _vendor_errors() -> tuple[type[BaseException], ...]:
    """Every exception a vendor call raises (LangChain's own subclass the SDKs')."""
    return _sdk_classes("AnthropicError") + _sdk_classes("OpenAIError") + _transport_errors()


def sdk_error(name: str, err: BaseException, *, timeout: float) -> ModelError:
    """Translate an `anthropic` or `openai` SDK exception (or LangChain's subclass of one)
    into a loggable `ModelError`. `name` prefixes the message ("anthropic:claude-…"); its
    part before ":" is the provider."""
    provider = name.split(":", 1)[0]
    if isinstance(err, _sdk_classes("APITimeoutError")):
        message = f"{name}: no response within {timeout:g}s"
        return ModelError(message, provider=provider, error_type="timeout")
    if isinstance(err, _sdk_classes("APIStatusError")):
        status = getattr(err, "status_code", None)
        kind = _error_type(err) or "unknown_error"
        request_id = _token(getattr(err, "request_id", None))
        message = f"{name}: HTTP {status} {kind}"
        if request_id:
            message += f" (request id {request_id})"
        return ModelError(message, provider=provider, status_code=status, error_type=kind)
    if isinstance(err, _transport_errors()):
        why = type(err).__name__
        return ModelError(
            f"{name}: connection failed ({why})", provider=provider, error_type="connection"
        )
    if isinstance(err, _sdk_classes("APIConnectionError")):
        cause = err.__cause__
        while isinstance(cause, _sdk_classes("APIConnectionError")):  # LangChain re-raises
            cause = cause.__cause__
        why = type(cause).__name__ if cause else "unknown cause"
        return ModelError(
            f"{name}: connection failed ({why})", provider=provider, error_type="connection"
        )
    if isinstance(err, _sdk_classes("APIResponseValidationError")):
        status = getattr(err, "status_code", None)
        return ModelError(
            f"{name}: unexpected response (HTTP {status})",
            provider=provider,
            status_code=status,
            error_type="invalid_response",
        )
    if isinstance(err, _sdk_classes("APIError")):  # an error event inside a stream
        kind = _error_type(err) or "stream_error"
        return ModelError(f"{name}: {kind} while streaming", provider=provider, error_type=kind)
    return ModelError(f"{name}: {type(err).__name__}", provider=provider)


def _missing_key(provider: str, variable: str) -> ModelError:
    return ModelError(f"{provider}: no API key configured (set {variable})", provider=provider)


# -- messages ------------------------------------------------------------------------------


def message_text(message: BaseMessage) -> str:
    """Plain text of a message whose content is a string or a list of content blocks."""
    content = message.content
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "".join(parts)


def _turns(messages: Sequence[BaseMessage]) -> list[tuple[Literal["user", "assistant"], str]]:
    """(role, text) of the conversation as every vendor accepts it: non-empty human and AI
    messages only (the system prompt travels apart), runs of one role merged (a person may
    send several messages in a row), no leading bot turn (a greeting left at the start of
    the history window), since Anthropic wants the user first and roles alternating."""
    turns: list[tuple[Literal["user", "assistant"], str]] = []
    for message in messages:
        text = message_text(message).strip()
        if not text or not isinstance(message, HumanMessage | AIMessage):
            continue
        role: Literal["user", "assistant"] = (
            "user" if isinstance(message, HumanMessage) else "assistant"
        )
        if not turns and role == "assistant":
            continue
        if turns and turns[-1][0] == role:
            turns[-1] = (role, turns[-1][1] + "\n\n" + text)
        else:
            turns.append((role, text))
    return turns


def _as_messages(prompt: Prompt) -> list[BaseMessage]:
    turns = _turns(prompt.messages)
    if not any(role == "user" for role, _ in turns):
        raise ValueError("the prompt has no non-empty user message to answer")
    messages: list[BaseMessage] = []
    if prompt.system.strip():
        messages.append(SystemMessage(prompt.system))
    for role, text in turns:
        messages.append(HumanMessage(text) if role == "user" else AIMessage(text))
    return messages


# -- providers -----------------------------------------------------------------------------


class _VendorChat:
    """A LangChain chat model of a vendor behind our interface. The SDK under it bounds
    each HTTP attempt by `llm_timeout_seconds` and retries connection errors, 408, 409,
    429 and 5xx/529 `max_retries` times with backoff (or the server's retry-after)."""

    offline = False
    provider: str

    def __init__(self, chat: BaseChatModel, *, name: str, timeout: float) -> None:
        self.name = name
        self._chat = chat
        self._timeout = timeout

    def _error(self, err: BaseException) -> ModelError:
        return sdk_error(self.name, err, timeout=self._timeout)

    async def astream(self, prompt: Prompt) -> AsyncIterator[AIMessageChunk]:
        messages = _as_messages(prompt)
        with llm_call(self.provider, "chat"):
            try:
                async for chunk in self._chat.astream(messages):
                    if isinstance(chunk, AIMessageChunk):
                        yield chunk
            except _vendor_errors() as err:
                raise self._error(err) from None

    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        return answer_message(self, [chunk async for chunk in self.astream(prompt)])

    @measure_llm("tool")
    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        spec = {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.schema,
            },
        }
        bound = self._chat.bind_tools([spec], tool_choice=tool.name)
        try:
            reply = await bound.ainvoke(_as_messages(prompt))
        except _vendor_errors() as err:
            raise self._error(err) from None
        assert isinstance(reply, AIMessage)
        for call in reply.tool_calls:
            if call["name"] == tool.name:
                if isinstance(call["args"], dict):
                    return call["args"]
                raise _bad_tool_call(self.name, self.provider, "arguments are not an object")
        if any(c.get("name") == tool.name for c in reply.invalid_tool_calls):
            raise _bad_tool_call(self.name, self.provider, "arguments are not a JSON object")
        raise _bad_tool_call(self.name, self.provider, f"the reply did not call {tool.name}")

    async def aclose(self) -> None:
        """Nothing to release: LangChain shares its HTTP clients across the process."""


class AnthropicChat(_VendorChat):
    """Claude through LangChain's `ChatAnthropic` (the Messages API, streamed)."""

    provider = "anthropic"

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if settings.anthropic_api_key is None:
            raise _missing_key("anthropic", "ANTHROPIC_API_KEY")
        from langchain_anthropic import ChatAnthropic  # at start-up, never per request

        chat = ChatAnthropic(
            model=settings.anthropic_model,
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            max_tokens=settings.llm_max_tokens,
            timeout=settings.llm_timeout_seconds,
            max_retries=max_retries,
            stream_usage=True,
        )
        super().__init__(
            chat,
            name=f"anthropic:{settings.anthropic_model}",
            timeout=settings.llm_timeout_seconds,
        )


class OpenAIChat(_VendorChat):
    """An OpenAI model through LangChain's `ChatOpenAI` (Chat Completions, streamed). It
    sends the reply length as `max_completion_tokens`, which reasoning (o-series) models
    require and gpt-4o-mini class models accept."""

    provider = "openai"

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if settings.openai_api_key is None:
            raise _missing_key("openai", "OPENAI_API_KEY")
        from langchain_openai import ChatOpenAI  # at start-up, never per request

        chat = ChatOpenAI(
            model=settings.openai_model,
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            max_tokens=settings.llm_max_tokens,
            timeout=settings.llm_timeout_seconds,
            max_retries=max_retries,
            stream_usage=True,
        )
        super().__init__(
            chat, name=f"openai:{settings.openai_model}", timeout=settings.llm_timeout_seconds
        )


# -- offline -------------------------------------------------------------------------------

_PIECES = re.compile(r"\s*\S+|\s+")


def _pieces(text: str) -> Iterator[str]:
    """Word by word with the whitespace before each: joined, exactly `text`."""
    yield from _PIECES.findall(text)


class OfflineChatModel(BaseChatModel):
    """A LangChain chat model with no network and no model: it answers from the recalled
    memories passed as `memories=` (see engine.offline), and streams word by word like a
    model would, so everything downstream of a stream is exercised offline too."""

    min_score: float = DEFAULT_MIN_SCORE  # see engine/memory/relevance.py

    @property
    def _llm_type(self) -> str:
        return "membot-offline"

    def _reply(self, messages: list[BaseMessage], memories: Sequence[Recalled]) -> str:
        user_text = next(
            (message_text(m) for m in reversed(messages) if isinstance(m, HumanMessage)), ""
        )
        return offline_reply(user_text, memories, min_score=self.min_score)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._reply(messages, kwargs.get("memories", ()))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for piece in _pieces(self._reply(messages, kwargs.get("memories", ()))):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                await run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class OfflineChat:
    """The offline model behind our interface. Every reply starts with "[offline] " and
    carries `{"offline": True}` in its metadata, so users and code can tell it from a
    model's answer."""

    name = "offline"
    offline = True

    def __init__(self, *, min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.min_score = min_score
        self._chat = OfflineChatModel(min_score=min_score)

    async def astream(self, prompt: Prompt) -> AsyncIterator[AIMessageChunk]:
        # Not `_as_messages`: the offline model answers the last human message as typed.
        messages = [m for m in prompt.messages if isinstance(m, HumanMessage | AIMessage)]
        async for chunk in self._chat.astream(messages, memories=prompt.memories):
            if isinstance(chunk, AIMessageChunk):
                yield chunk

    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        return answer_message(self, [chunk async for chunk in self.astream(prompt)])

    async def aclose(self) -> None:
        """Nothing to release; present so every model can be closed the same way."""


def make_chat_model(settings: Settings) -> ChatModel:
    """The chat model the settings ask for (`llm_provider`, or by which API key is set)."""
    provider = settings.resolved_llm_provider()
    if provider == "anthropic":
        return AnthropicChat(settings)
    if provider == "openai":
        return OpenAIChat(settings)
    return OfflineChat(min_score=settings.memory_min_relevance)
