"""The chat workflow: LangGraph's functional API, cross-thread persistence pattern.

`previous` holds the thread's messages (checkpointed per `thread_id`); memories live
in the store under `("memories", user_id)` and follow the user into every thread.
Each turn: recall (semantic search in the user's namespace) -> answer (chat model with
the memories as quoted data) -> remember (write explicitly stated facts).
"""

from __future__ import annotations

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

from engine.memory.extract import extract_facts
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
) -> Pregel:
    """The compiled workflow. Invoke with `{"text": ...}` and a config carrying
    `thread_id` and `user_id`; it returns the reply as an `AIMessage`."""

    @task
    async def recall(user_id: str, query: str) -> list[tuple[str, float | None]]:
        if top_k == 0:
            return []
        try:
            items = await get_store().asearch(memory_namespace(user_id), query=query, limit=top_k)
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
        return await model.ainvoke(prompt)

    @task
    async def remember(user_id: str, thread_id: str, text: str) -> int:
        facts = extract_facts(text)
        store = get_store()
        for fact in facts:
            value = {"text": fact.text, "kind": fact.kind, "source_thread": thread_id}
            await store.aput(memory_namespace(user_id), fact.key, value)
        return len(facts)

    @entrypoint(checkpointer=checkpointer, store=store)
    async def chat(
        turn: dict[str, Any], *, previous: list[BaseMessage] | None, config: RunnableConfig
    ) -> entrypoint.final[AIMessage, list[BaseMessage]]:
        configurable = config["configurable"]
        user_id, thread_id = configurable["user_id"], configurable["thread_id"]
        text: str = turn["text"]
        user_message = HumanMessage(content=text, additional_kwargs={"user_id": user_id})
        messages = add_messages(previous or [], [user_message])

        recalled = await recall(user_id, text)
        prompt = Prompt(
            # A language model weighs every recalled memory itself; the offline model
            # answers from memories alone, so it only gets those that match the question.
            system=system_prompt([text for text, _ in recalled]),
            memories=[t for t, score in recalled if score is None or score >= min_relevance],
            messages=list(messages[-history_messages:]),
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
        try:
            await remember(user_id, thread_id, text)
        except Exception:
            logger.warning("memory write failed for thread %s", thread_id, exc_info=True)
        return entrypoint.final(value=reply, save=saved)

    return chat
