"""The chat workflow: LangGraph's functional API, cross-thread persistence pattern.

`previous` holds the thread's state (messages and a running summary, checkpointed per
`thread_id`); memories live in the store under `("memories", user_id)` and follow the user
into every thread. A turn is: recall (semantic search in the user's namespace) -> answer
(chat model; system prompt with memories as quoted data and the summary, then the recent
messages that fit the token budget). Learning new memories happens after the reply, in the
background (`engine.memory.writer`), so the user never waits for it.

The same entrypoint also compacts a thread (`{"compact": True}`): older messages are folded
into the summary, so checkpoints stay bounded. Going through the entrypoint keeps the
checkpoint the single source of truth, written by LangGraph alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_store
from langgraph.func import entrypoint, task
from langgraph.graph import add_messages
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from engine import metrics
from engine.conversation import ThreadState, compact, recent_messages, text_tokens, thread_state
from engine.memory.manager import MemoryManager
from engine.memory.namespace import memory_namespace
from engine.memory.prompt import system_prompt
from engine.models import ChatModel, ModelError, Prompt

logger = logging.getLogger(__name__)

APOLOGY = (
    "Sorry, I couldn't reach my language model just now ({cause}). Your message is saved "
    "in this conversation; please try again in a moment."
)


def build_chat_workflow(
    *,
    model: ChatModel,
    checkpointer: BaseCheckpointSaver,
    store: BaseStore,
    top_k: int = 5,
    history_messages: int = 40,
    min_relevance: float = 0.3,
    token_budget: int = 8000,
    learn_inline: bool = True,
    answer_timeout: float = 90.0,
    recall_timeout: float = 5.0,
) -> Pregel:
    """The compiled workflow. Invoke with `{"text": ...}` and a config carrying
    `thread_id` and `user_id`; it returns the reply as an `AIMessage`. `{"compact": True}`
    compacts the thread instead and returns None.

    With `learn_inline` (the guide's pattern, and what a bare LangGraph program wants) the
    turn itself learns memories after answering; `MemoryBot` turns it off and learns in
    the background instead, after the reply has been sent.
    """

    # A plain coroutine, not a task: a read needs no checkpointed result, and a task would
    # cost a scheduling round and a write per turn.
    async def recall(user_id: str, query: str) -> list[tuple[str, float | None]]:
        if top_k == 0:
            return []
        try:
            with metrics.STORE_SECONDS.labels("recall").time():
                async with asyncio.timeout(recall_timeout):
                    items = await get_store().asearch(
                        memory_namespace(user_id), query=query, limit=top_k
                    )
        except Exception:
            # Answering without memories beats not answering; say nothing false.
            logger.warning("memory recall failed; answering without memories", exc_info=True)
            return []
        return [
            (item.value["text"], item.score)
            for item in items
            if isinstance(item.value.get("text"), str)
        ]

    @task
    async def answer(prompt: Prompt) -> AIMessage:
        # The SDK bounds each attempt and its retries; this bounds the whole answer.
        try:
            async with asyncio.timeout(answer_timeout):
                return await model.ainvoke(prompt)
        except TimeoutError:
            raise ModelError(
                f"{model.name}: no answer within {answer_timeout:g}s",
                provider=model.name.split(":", 1)[0],
                error_type="deadline",
            ) from None

    @task
    async def learn(user_id: str, thread_id: str, said: list[BaseMessage]) -> int:
        changes = await MemoryManager(get_store(), model).learn(user_id, thread_id, said)
        return len(changes)

    @task
    async def summarise(state: ThreadState) -> ThreadState:
        return await compact(state, token_budget, model)

    @entrypoint(checkpointer=checkpointer, store=store)
    async def chat(
        turn: dict[str, Any], *, previous: Any, config: RunnableConfig
    ) -> entrypoint.final[AIMessage | None, ThreadState]:
        state = thread_state(previous)
        if turn.get("compact"):
            return entrypoint.final(value=None, save=await summarise(state))
        configurable = config["configurable"]
        user_id, thread_id = configurable["user_id"], configurable["thread_id"]
        text: str = turn["text"]
        user_message = HumanMessage(content=text, additional_kwargs={"user_id": user_id})
        messages = add_messages(state["messages"], [user_message])

        recalled = await recall(user_id, text)
        system = system_prompt([text for text, _ in recalled], state["summary"])
        prompt = Prompt(
            system=system,
            # A language model weighs every recalled memory itself; the offline model
            # answers from memories alone, so it only gets those that match the question.
            memories=[t for t, score in recalled if score is None or score >= min_relevance],
            messages=recent_messages(
                messages[-history_messages:], token_budget - text_tokens(system)
            ),
        )
        try:
            reply = await answer(prompt)
        except ModelError as err:
            logger.error("chat model failed for thread %s: %s", thread_id, err)
            reply = AIMessage(
                content=APOLOGY.format(cause=err.error_type or "provider error"),
                response_metadata={"model": model.name, "offline": model.offline, "error": True},
            )
            # Keep the user's message, not the apology: the next turn sees the question.
            saved = messages
        else:
            saved = add_messages(messages, [reply])
        if learn_inline:
            try:
                await learn(user_id, thread_id, [user_message])
            except Exception:
                logger.warning("memory write failed for thread %s", thread_id, exc_info=True)
        return entrypoint.final(value=reply, save={"messages": saved, "summary": state["summary"]})

    return chat
