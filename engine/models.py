"""Chat models behind one small interface: Anthropic, OpenAI, and an offline stand-in.

The workflow builds a `Prompt` (system prompt with the recalled memories rendered in, plus the
recent conversation) and awaits `ChatModel.ainvoke`. Each vendor's rules stay in here (roles
must alternate for Anthropic; parameter names; error classes), and every provider failure comes
out as one `ModelError`, so callers handle "the model is unavailable" in one place and can log
it without leaking a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from engine.memory.recall import Recalled
from engine.memory.relevance import DEFAULT_MIN_SCORE
from engine.metrics import measure_llm
from engine.offline import offline_reply, to_second_person
from engine.settings import Settings

if TYPE_CHECKING:
    import anthropic
    import openai

# The vendor SDKs are imported where they are used: together they take seconds to import,
# which the offline default (and every console start) should not pay.

__all__ = [
    "AnthropicChat",
    "ChatModel",
    "ModelError",
    "OfflineChat",
    "OpenAIChat",
    "Prompt",
    "Tool",
    "ToolCallingModel",
    "make_chat_model",
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

    async def ainvoke(self, prompt: Prompt) -> AIMessage: ...


@runtime_checkable
class ToolCallingModel(ChatModel, Protocol):
    """A chat model that can be forced to answer with one tool call (structured output)."""

    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        """The arguments the model passed to `tool`; `ModelError` if it failed or did not
        call it with a JSON object."""
        ...


def _bad_tool_call(name: str, provider: str, why: str) -> ModelError:
    return ModelError(f"{name}: {why}", provider=provider, error_type="invalid_response")


# -- errors --------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def _token(value: object) -> str | None:
    """A short identifier-like string from untrusted server data, or None."""
    if value is None:
        return None
    return _UNSAFE.sub("", str(value))[:64] or None


def _error_type(err: anthropic.APIStatusError | openai.APIStatusError) -> str | None:
    kind = getattr(err, "type", None)  # newer SDKs parse it; older ones only keep the body
    body = err.body
    if kind is None and isinstance(body, dict):
        inner = body.get("error", body)
        kind = inner.get("type") if isinstance(inner, dict) else None
    return _token(kind)


def sdk_error(name: str, err: Exception, *, timeout: float) -> ModelError:
    """Translate an `anthropic` or `openai` SDK exception into a loggable `ModelError`.

    `name` prefixes the message ("anthropic:claude-…"); its part before ":" is the provider.
    """
    import anthropic
    import openai

    provider = name.split(":", 1)[0]
    if isinstance(err, anthropic.APITimeoutError | openai.APITimeoutError):
        message = f"{name}: no response within {timeout:g}s"
        return ModelError(message, provider=provider, error_type="timeout")
    if isinstance(err, anthropic.APIStatusError | openai.APIStatusError):
        kind = _error_type(err) or "unknown_error"
        request_id = _token(getattr(err, "request_id", None))
        message = f"{name}: HTTP {err.status_code} {kind}"
        if request_id:
            message += f" (request id {request_id})"
        return ModelError(message, provider=provider, status_code=err.status_code, error_type=kind)
    if isinstance(err, anthropic.APIConnectionError | openai.APIConnectionError):
        cause = type(err.__cause__).__name__ if err.__cause__ else "unknown cause"
        return ModelError(
            f"{name}: connection failed ({cause})", provider=provider, error_type="connection"
        )
    if isinstance(err, anthropic.APIResponseValidationError | openai.APIResponseValidationError):
        return ModelError(
            f"{name}: unexpected response (HTTP {err.status_code})",
            provider=provider,
            status_code=err.status_code,
            error_type="invalid_response",
        )
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
    """(role, text) for the non-empty human and AI messages; others (system, tool) are dropped,
    the system prompt travels separately."""
    turns: list[tuple[Literal["user", "assistant"], str]] = []
    for message in messages:
        text = message_text(message).strip()
        if not text:
            continue
        if isinstance(message, HumanMessage):
            turns.append(("user", text))
        elif isinstance(message, AIMessage):
            turns.append(("assistant", text))
    return turns


def _anthropic_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    """The Messages API wants user/assistant turns alternating, starting with the user: merge
    runs of one role (a user may send several messages in a row) and drop a leading bot turn
    (e.g. a greeting left at the start of the history window)."""
    out: list[dict[str, str]] = []
    for role, text in _turns(messages):
        if not out and role == "assistant":
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"] += "\n\n" + text
        else:
            out.append({"role": role, "content": text})
    return out


def _no_user_message() -> ValueError:
    return ValueError("the prompt has no non-empty user message to answer")


# -- providers -----------------------------------------------------------------------------


class AnthropicChat:
    """Claude through the Messages API (non-streaming).

    `llm_timeout_seconds` bounds each HTTP attempt; the SDK retries connection errors, 408,
    409, 429 and 5xx/529 `max_retries` times with backoff (or the server's retry-after).
    """

    offline = False
    provider = "anthropic"

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if settings.anthropic_api_key is None:
            raise _missing_key("anthropic", "ANTHROPIC_API_KEY")
        self.name = f"anthropic:{settings.anthropic_model}"
        self._model = settings.anthropic_model
        self._max_tokens = settings.llm_max_tokens
        self._timeout = settings.llm_timeout_seconds
        import anthropic

        self._sdk_errors = anthropic.AnthropicError
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.anthropic_api_key.get_secret_value(),
            base_url=settings.anthropic_base_url,
            timeout=self._timeout,
            max_retries=max_retries,
        )

    async def _create(self, prompt: Prompt, **options: Any) -> Any:
        """One Messages API call for `prompt`; SDK errors come out as `ModelError`."""
        messages = _anthropic_messages(prompt.messages)
        if not messages:
            raise _no_user_message()
        if prompt.system.strip():
            options["system"] = prompt.system
        try:
            return await self._client.messages.create(
                model=self._model, max_tokens=self._max_tokens, messages=messages, **options
            )
        except self._sdk_errors as err:
            raise sdk_error(self.name, err, timeout=self._timeout) from None

    @measure_llm("chat")
    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        reply = await self._create(prompt)
        text = "".join(block.text for block in reply.content if block.type == "text")
        usage = {
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
        }
        return AIMessage(
            content=text,
            id=reply.id,
            response_metadata={
                "model": self.name,
                "offline": False,
                "stop_reason": reply.stop_reason,
                "usage": usage,
            },
            usage_metadata={**usage, "total_tokens": sum(usage.values())},
        )

    @measure_llm("tool")
    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        spec = {"name": tool.name, "description": tool.description, "input_schema": tool.schema}
        reply = await self._create(
            prompt, tools=[spec], tool_choice={"type": "tool", "name": tool.name}
        )
        for block in reply.content:
            if block.type == "tool_use" and block.name == tool.name:
                if isinstance(block.input, dict):
                    return block.input
                raise _bad_tool_call(self.name, "anthropic", "tool input is not an object")
        raise _bad_tool_call(self.name, "anthropic", f"the reply did not call {tool.name}")

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIChat:
    """An OpenAI chat model through Chat Completions (non-streaming).

    The reply length is sent as `max_completion_tokens`: the SDK still accepts `max_tokens` but
    documents it as deprecated and rejected by reasoning (o-series) models, while gpt-4o-mini
    class models accept both. Retries and timeouts work as for `AnthropicChat`.
    """

    offline = False
    provider = "openai"

    def __init__(self, settings: Settings, *, max_retries: int = 2) -> None:
        if settings.openai_api_key is None:
            raise _missing_key("openai", "OPENAI_API_KEY")
        self.name = f"openai:{settings.openai_model}"
        self._model = settings.openai_model
        self._max_tokens = settings.llm_max_tokens
        self._timeout = settings.llm_timeout_seconds
        import openai

        self._sdk_errors = openai.OpenAIError
        self._client = openai.AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(),
            base_url=settings.openai_base_url,
            timeout=self._timeout,
            max_retries=max_retries,
        )

    async def _create(self, prompt: Prompt, **options: Any) -> Any:
        """One Chat Completions call for `prompt`; SDK errors come out as `ModelError`."""
        turns = _turns(prompt.messages)
        if not any(role == "user" for role, _ in turns):
            raise _no_user_message()
        messages: list[dict[str, str]] = []
        if prompt.system.strip():
            messages.append({"role": "system", "content": prompt.system})
        messages += [{"role": role, "content": text} for role, text in turns]
        try:
            return await self._client.chat.completions.create(
                model=self._model,
                messages=messages,
                max_completion_tokens=self._max_tokens,
                **options,
            )
        except self._sdk_errors as err:
            raise sdk_error(self.name, err, timeout=self._timeout) from None

    @measure_llm("tool")
    async def acall_tool(self, prompt: Prompt, tool: Tool) -> dict[str, Any]:
        function = {"name": tool.name, "description": tool.description, "parameters": tool.schema}
        completion = await self._create(
            prompt,
            tools=[{"type": "function", "function": function}],
            tool_choice={"type": "function", "function": {"name": tool.name}},
        )
        for choice in completion.choices[:1]:
            for call in choice.message.tool_calls or []:
                if call.type == "function" and call.function.name == tool.name:
                    try:
                        arguments = json.loads(call.function.arguments)
                    except ValueError:
                        why = "arguments are not JSON"
                        raise _bad_tool_call(self.name, "openai", why) from None
                    if isinstance(arguments, dict):
                        return arguments
                    raise _bad_tool_call(self.name, "openai", "arguments are not an object")
        raise _bad_tool_call(self.name, "openai", f"the reply did not call {tool.name}")

    @measure_llm("chat")
    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        completion = await self._create(prompt)
        if not completion.choices:
            raise ModelError(f"{self.name}: response had no choices", provider="openai")
        choice = completion.choices[0]
        text = choice.message.content or choice.message.refusal or ""
        usage: dict[str, int] = {}
        if completion.usage is not None:
            usage = {
                "prompt_tokens": completion.usage.prompt_tokens,
                "completion_tokens": completion.usage.completion_tokens,
                "total_tokens": completion.usage.total_tokens,
            }
        return AIMessage(
            content=text,
            id=completion.id,
            response_metadata={
                "model": self.name,
                "offline": False,
                "finish_reason": choice.finish_reason,
                "usage": usage,
            },
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        )

    async def aclose(self) -> None:
        await self._client.close()


class OfflineChat:
    """No network and no model: answers from the recalled memories only (see engine.offline).

    Every reply starts with "[offline] " and carries `{"offline": True}` in its metadata, so
    users and code can tell it from a model's answer.
    """

    name = "offline"
    offline = True

    def __init__(self, *, min_score: float = DEFAULT_MIN_SCORE) -> None:
        self.min_score = min_score  # see engine/memory/relevance.py

    async def ainvoke(self, prompt: Prompt) -> AIMessage:
        user_text = next(
            (message_text(m) for m in reversed(prompt.messages) if isinstance(m, HumanMessage)), ""
        )
        return AIMessage(
            content=offline_reply(user_text, prompt.memories, min_score=self.min_score),
            response_metadata={"model": self.name, "offline": True},
        )

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
