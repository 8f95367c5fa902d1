"""The chat workflow: LangGraph's functional API, cross-thread persistence pattern.

`previous` holds the thread's state (messages and a running summary, checkpointed per
`thread_id`); memories live in the store under `("memories", user_id)` and follow the user
into every thread. A turn is: recall (one hybrid,
recency-aware query over the user's facts and episodes) -> keep the message as an episode
(with recall's vector, so no second embedding) -> answer (chat model; system prompt with
dated memories as quoted data and the summary, then the recent messages that fit the token
budget). The episode makes what was said recallable in any other thread at once;
extracting facts from it happens after the reply, in the background
(`engine.memory.writer`), so the user never waits for it.

The same entrypoint also compacts a thread (`{"compact": True}`): older messages are folded
into the summary, so checkpoints stay bounded. Going through the entrypoint keeps the
checkpoint the single source of truth, written by LangGraph alone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_store, get_stream_writer
from langgraph.func import entrypoint, task
from langgraph.graph import add_messages
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from engine import metrics
from engine.conversation import ThreadState, compact, recent_messages, text_tokens, thread_state
from engine.memory.manager import MemoryManager, episode
from engine.memory.namespace import memory_namespace
from engine.memory.prompt import system_prompt
from engine.memory.recall import Recalled
from engine.memory.recall import recall as recall_memories
from engine.memory.records import episode_key, parse_time
from engine.models import ChatModel, ModelError, Prompt, answer_message, message_text

logger = logging.getLogger(__name__)

APOLOGY = (
    "Sorry, I couldn't reach my language model just now ({cause}). Your message is saved "
    "in this conversation; please try again in a moment."
)
# After the text a model wrote before it failed mid-answer.
INTERRUPTED = "\n\n_(I was cut off there: {cause}. Ask me to go on if you need the rest.)_"


def with_feedback(state: ThreadState, *, message_id: str, rating: str, by: str) -> ThreadState:
    """The thread with the person's rating ("good"/"bad") kept on the answer to their
    message `message_id` (in its metadata, beside the model's name); unchanged if that
    answer has left the window (folded into the summary)."""
    messages = list(state["messages"])
    for index, (said, answer) in enumerate(itertools.pairwise(messages)):
        if (
            isinstance(said, HumanMessage)
            and said.id == message_id
            and isinstance(answer, AIMessage)
        ):
            rated = answer.model_copy(deep=True)
            rated.response_metadata["feedback"] = {"rating": rating, "by": by}
            messages[index + 1] = rated
            break
    return {"messages": messages, "summary": state["summary"]}


def build_chat_workflow(
    *,
    model: ChatModel,
    checkpointer: BaseCheckpointSaver,
    store: BaseStore,
    top_k: int = 5,
    history_messages: int = 40,
    token_budget: int = 8000,
    learn_inline: bool = True,
    answer_timeout: float = 90.0,
    recall_timeout: float = 5.0,
) -> Pregel:
    """The compiled workflow. Invoke with `{"text": ...}` (optionally `"message_id"`, the
    platform's id of the message, and `"at"`, when it was sent, ISO 8601) and a config
    carrying `thread_id` and `user_id`; it returns the reply as an `AIMessage`.
    `{"compact": True}` compacts the thread instead and returns None.

    With `learn_inline` (the guide's pattern, and what a bare LangGraph program wants) the
    turn itself learns memories after answering; `MemoryBot` turns it off and learns in
    the background instead, after the reply has been sent.
    """

    # A plain coroutine, not a task: a read needs no checkpointed result, and a task would
    # cost a scheduling round and a write per turn.
    async def recall(user_id: str, query: str) -> list[Recalled]:
        try:
            with metrics.STORE_SECONDS.labels("recall").time():
                async with asyncio.timeout(recall_timeout):
                    return await recall_memories(get_store(), user_id, query, limit=top_k)
        except Exception:
            # Answering without memories beats not answering; say nothing false.
            logger.warning("memory recall failed; answering without memories", exc_info=True)
            return []

    async def keep_episode(
        user_id: str, thread_id: str, message: HumanMessage, at: datetime
    ) -> None:
        """The message as an episode, now: recallable from the next turn in any thread.
        Its text was just embedded as recall's query, so the embedder's cache serves
        the vector. A failure is logged only: learning (journaled) writes it again."""
        message_id = str(message.id)
        value = episode(str(message.content), thread_id=thread_id, message_id=message_id, at=at)
        try:
            with metrics.STORE_SECONDS.labels("write").time():
                async with asyncio.timeout(recall_timeout):
                    await get_store().aput(
                        memory_namespace(user_id), episode_key(thread_id, message_id), value
                    )
        except Exception:
            logger.warning("episode not stored now; learning will retry it", exc_info=True)

    @task
    async def answer(prompt: Prompt) -> AIMessage:
        """The model's answer, streamed: each piece of text goes to LangGraph's stream
        writer as it arrives (`stream_mode="custom"`; a no-op when nobody streams). If
        the model fails after some text was sent, that text is the answer, marked
        `interrupted`: the person has already read it."""
        write = get_stream_writer()
        chunks: list[AIMessageChunk] = []
        try:
            # The SDK bounds each attempt and its retries; this bounds the whole answer.
            async with asyncio.timeout(answer_timeout):
                async for chunk in model.astream(prompt):
                    chunks.append(chunk)
                    if piece := message_text(chunk):
                        write(piece)
        except TimeoutError:
            failure = ModelError(
                f"{model.name}: no answer within {answer_timeout:g}s",
                provider=model.name.split(":", 1)[0],
                error_type="deadline",
            )
        except ModelError as err:
            failure = err
        else:
            return answer_message(model, chunks)
        partial = answer_message(model, chunks)
        if not message_text(partial):
            raise failure
        logger.error("chat model stopped mid-answer: %s", failure)
        partial.response_metadata["interrupted"] = failure.error_type or "provider error"
        return partial

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
        if "feedback" in turn:
            return entrypoint.final(value=None, save=with_feedback(state, **turn["feedback"]))
        configurable = config["configurable"]
        user_id, thread_id = configurable["user_id"], configurable["thread_id"]
        text: str = turn["text"]
        at = parse_time(turn.get("at")) or datetime.now(UTC)
        user_message = HumanMessage(
            content=text,
            id=str(turn.get("message_id") or uuid.uuid4()),
            additional_kwargs={"user_id": user_id, "at": at.isoformat()},
        )
        messages = add_messages(state["messages"], [user_message])

        recalled = await recall(user_id, text)
        # Written while the model answers (it never raises); awaited before the turn ends.
        episode = asyncio.create_task(keep_episode(user_id, thread_id, user_message, at))
        system = system_prompt(recalled, state["summary"])
        prompt = Prompt(
            system=system,
            # Best first, with kinds and dates; the offline model decides itself which
            # (if any) answer the question, a language model weighs them all.
            memories=recalled,
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
            if cause := reply.response_metadata.get("interrupted"):
                # The partial answer is saved as written (the next turn sees it); the
                # person also reads, after it, that it stopped short.
                note = INTERRUPTED.format(cause=cause)
                get_stream_writer()(note)
                reply = AIMessage(
                    content=message_text(reply) + note,
                    response_metadata={**reply.response_metadata, "error": True},
                )
        finally:
            # What was said is kept whether or not it was answered (a cancelled turn
            # leaves the write running rather than half done).
            await asyncio.shield(episode)
        if learn_inline:
            try:
                await learn(user_id, thread_id, [user_message])
            except Exception:
                logger.warning("memory write failed for thread %s", thread_id, exc_info=True)
        return entrypoint.final(value=reply, save={"messages": saved, "summary": state["summary"]})

    return chat
