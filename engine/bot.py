"""`MemoryBot`: the one object adapters talk to.

It owns the store, the checkpointer, the chat model and the compiled workflow, and
turns `(user_id, thread_id, text)` into a `Reply`. Adapters never touch LangGraph or
the store directly, so Slack, Discord and the console behave the same.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.store.base import BaseStore, Item

from engine.embeddings import make_embeddings
from engine.memory.extract import extract_facts
from engine.memory.namespace import memory_namespace
from engine.models import ChatModel, make_chat_model
from engine.settings import Settings
from engine.store.erase import adelete_namespace
from engine.store.factory import open_store
from engine.text import clean_text
from engine.workflow import build_chat_workflow

logger = logging.getLogger(__name__)

PREVIOUS_CHANNEL = "__previous__"  # where `entrypoint.final(save=...)` is checkpointed


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    offline: bool
    error: bool = False


class MemoryBot:
    def __init__(
        self,
        *,
        settings: Settings,
        store: BaseStore,
        checkpointer: BaseCheckpointSaver,
        model: ChatModel,
    ) -> None:
        self.settings = settings
        self.store = store
        self.checkpointer = checkpointer
        self.model = model
        self.workflow = build_chat_workflow(
            model=model,
            checkpointer=checkpointer,
            store=store,
            top_k=settings.memory_top_k,
            history_messages=settings.history_messages,
            min_relevance=settings.memory_min_relevance,
        )
        # One turn at a time per thread, or two turns would both read the same
        # `previous` and the later save would drop the earlier message.
        self._thread_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        model: ChatModel | None = None,
        embeddings: tuple[Embeddings, int] | None = None,
    ) -> AsyncIterator[MemoryBot]:
        """Everything from settings; `model`/`embeddings` override them (tests, tools)."""
        settings = settings or Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        embedder, dims = embeddings or make_embeddings(settings)
        model = model or make_chat_model(settings)
        async with AsyncExitStack() as stack:
            store = await stack.enter_async_context(open_store(settings, embedder, dims))
            settings.checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            checkpointer = await stack.enter_async_context(
                AsyncSqliteSaver.from_conn_string(str(settings.checkpoint_path))
            )
            if close := getattr(model, "aclose", None):
                stack.push_async_callback(close)
            yield cls(settings=settings, store=store, checkpointer=checkpointer, model=model)

    # -- conversation ----------------------------------------------------------------

    async def chat(self, *, user_id: str, thread_id: str, text: str) -> Reply:
        text = clean_text(text or "").strip()
        if not text:
            return self._notice("I didn't get any text. Send me a message and I'll answer.")
        limit = self.settings.max_message_chars
        if len(text) > limit:
            return self._notice(
                f"That message is {len(text):,} characters long; I can read up to {limit:,}. "
                "Please shorten it or split it into parts."
            )
        config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "user_id": user_id}}
        lock = self._thread_locks.setdefault(thread_id, asyncio.Lock())
        async with lock:
            message = await self.workflow.ainvoke({"text": text}, config)
        metadata = message.response_metadata
        return Reply(
            text=str(message.content),
            model=metadata.get("model", self.model.name),
            offline=bool(metadata.get("offline", self.model.offline)),
            error=bool(metadata.get("error", False)),
        )

    def _notice(self, text: str) -> Reply:
        return Reply(text=text, model=self.model.name, offline=self.model.offline, error=True)

    async def history(self, thread_id: str) -> list[BaseMessage]:
        saved = await self.checkpointer.aget_tuple({"configurable": {"thread_id": thread_id}})
        if saved is None:
            return []
        return list(saved.checkpoint["channel_values"].get(PREVIOUS_CHANNEL) or [])

    async def forget_thread(self, thread_id: str) -> None:
        await self.checkpointer.adelete_thread(thread_id)

    # -- memories ----------------------------------------------------------------------

    async def memories(self, user_id: str, limit: int = 100) -> list[Item]:
        """The user's memories, newest first."""
        return await self.store.asearch(memory_namespace(user_id), limit=limit)

    async def count_memories(self, user_id: str, limit: int = 1000) -> int:
        """How many memories a user has (up to `limit`), e.g. for a confirmation prompt."""
        return len(await self.memories(user_id, limit=limit))

    async def remember(self, user_id: str, text: str, *, source_thread: str = "") -> list[Item]:
        """Store an explicitly given fact (`/remember`). Text that is not a recognisable
        statement is stored as said."""
        text = clean_text(text or "").strip()
        if not text:
            return []
        facts = extract_facts(f"remember: {text}")
        namespace = memory_namespace(user_id)
        for fact in facts:
            value = {"text": fact.text, "kind": fact.kind, "source_thread": source_thread}
            await self.store.aput(namespace, fact.key, value)
        stored = [await self.store.aget(namespace, fact.key) for fact in facts]
        return [item for item in stored if item is not None]

    async def forget(self, user_id: str) -> int:
        """Erase all of a user's memories; returns how many there were."""
        return await adelete_namespace(self.store, memory_namespace(user_id))
