"""`MemoryBot`: the one object adapters talk to.

It owns the store, the checkpointer, the chat model, the compiled workflow and the
background writer, and turns `(user_id, thread_id, text)` into a `Reply`. Adapters never
touch LangGraph or the store directly, so Slack, Discord and the console behave the same.

Each turn keeps the user's message as an episode before it answers (engine/workflow.py),
so what was said in one thread is recallable in the next at once, and no turn ever waits
for learning. After the reply the turn's messages go to the debounced writer, which
extracts facts from them (journaled) and compacts the thread when it outgrew its budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore, Item

from engine import metrics
from engine.audit import AuditLog
from engine.checkpoint import open_checkpointer
from engine.conversation import ThreadState, over_budget, thread_state
from engine.embeddings import make_embeddings
from engine.identity import Code, Identities, said_within, tenancy_of
from engine.inbox import Inbound, Inbox, MemoryInbox, open_inbox
from engine.locks import LocalLocks, Locks, open_locks
from engine.memory.extract import extract_facts
from engine.memory.linking import Moved, merge_into, split_off
from engine.memory.manager import MemoryManager
from engine.memory.namespace import memory_namespace, storable_id
from engine.memory.outbox import Outbox, Pending, open_outbox
from engine.memory.records import EPISODES_ONLY, FACTS_ONLY, history_namespace, memory_history
from engine.memory.writer import Batch, DebouncedWriter
from engine.models import ChatModel, make_chat_model
from engine.portability import export_person, import_person
from engine.reply import Reply, ReplyStream
from engine.settings import Settings
from engine.store.erase import adelete_namespace
from engine.store.factory import open_store
from engine.text import clean_text
from engine.turns import Resume, Ticket
from engine.workflow import build_chat_workflow

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoints.sqlite"  # in data_dir, unless MEMBOT_CHECKPOINT_URL says else
PREVIOUS_CHANNEL = "__previous__"
_ALL_FACTS = 100_000  # a count for the confirmation, far above any one person's facts
INBOX_SWEEP_SECONDS = 30.0  # how often open messages of dead processes are looked for

LINKS_LOCK = "membot:identity-links"  # one link change at a time, across replicas
LINK_PENDING = ("link_pending",)  # link changes begun, not yet finished (a crash)

STORAGE_APOLOGY = (
    "Sorry, I can't reach my conversation storage right now, so I couldn't read or save "
    "this conversation and didn't answer. Please send your message again in a minute."
)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # where `entrypoint.final(save=...)` is checkpointed


class MemoryBot:
    def __init__(
        self,
        *,
        settings: Settings,
        store: BaseStore,
        checkpointer: BaseCheckpointSaver,
        model: ChatModel,
        locks: Locks | None = None,
        journal: Outbox | None = None,
        inbox: Inbox | None = None,
    ) -> None:
        self.settings = settings
        # One turn at a time per thread, or two turns would both read the same `previous`
        # and the later save would drop the earlier message. Across processes in server
        # mode (Postgres advisory locks), within one otherwise.
        self.locks = locks or LocalLocks(settings.data_dir / "locks")
        # Learning in progress or failed (store down, crash), retried until applied.
        self.journal = journal
        # Every accepted platform message until its answer is delivered (engine/inbox.py).
        self.inbox: Inbox = inbox or MemoryInbox()
        self._tickets: set[Ticket] = set()
        self._tickets_changed = asyncio.Event()
        self._draining = False
        self._background: set[asyncio.Task[None]] = set()
        self.store = store
        self.checkpointer = checkpointer
        self.model = model
        self.workflow = build_chat_workflow(
            model=model,
            checkpointer=checkpointer,
            store=store,
            top_k=settings.memory_top_k,
            history_messages=settings.history_messages,
            token_budget=settings.context_token_budget,
            learn_inline=False,  # the writer learns after the reply, debounced
            answer_timeout=settings.answer_timeout_seconds,
            recall_timeout=settings.recall_timeout_seconds,
        )
        self.memory = MemoryManager(store, model, one_at_a_time=self.locks.user_memory)
        # Linked accounts share one person's memories (engine/identity.py).
        self.identities = Identities(store)
        self.audit = AuditLog(settings.audit_log_path)
        self.writer = DebouncedWriter(self._after_turns, debounce=settings.memory_debounce_seconds)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        model: ChatModel | None = None,
        embeddings: tuple[Embeddings, int] | None = None,
        store: BaseStore | None = None,
    ) -> AsyncIterator[MemoryBot]:
        """Everything from settings; `model`/`embeddings`/`store` override them (tests,
        tools)."""
        settings = settings or Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        embedder, dims = embeddings or make_embeddings(settings)
        if warm := getattr(embedder, "warm", None):
            # Load the local model now, not inside the first turns' recall deadline.
            await asyncio.to_thread(warm)
        model = model or make_chat_model(settings)
        async with AsyncExitStack() as stack:
            if store is None:
                store = await stack.enter_async_context(open_store(settings, embedder, dims))
            checkpointer = await stack.enter_async_context(
                open_checkpointer(
                    settings.checkpoint_url,
                    settings.data_dir / CHECKPOINT_FILE,
                    pool_size=settings.postgres_checkpoint_connections,
                )
            )
            locks = await stack.enter_async_context(
                open_locks(
                    settings.checkpoint_url,
                    settings.data_dir / "locks",
                    pool_size=settings.postgres_lock_connections,
                )
            )
            journal = await stack.enter_async_context(
                open_outbox(settings.checkpoint_url, settings.data_dir)
            )
            inbox = await stack.enter_async_context(
                open_inbox(settings.checkpoint_url, settings.data_dir)
            )
            if close := getattr(model, "aclose", None):
                stack.push_async_callback(close)
            bot = cls(
                settings=settings,
                store=store,
                checkpointer=checkpointer,
                model=model,
                locks=locks,
                journal=journal,
                inbox=inbox,
            )
            stack.push_async_callback(bot._close_writer)  # runs before the store closes
            stack.push_async_callback(bot._stop_background)
            await bot._finish_links_quietly()
            retries = asyncio.create_task(bot._retry_journal_forever(), name="journal-retry")
            stack.push_async_callback(_cancel, retries)
            yield bot

    # -- conversation ----------------------------------------------------------------

    async def chat(
        self,
        *,
        user_id: str,
        thread_id: str,
        text: str,
        message_id: str | None = None,
        at: datetime | None = None,
    ) -> Reply:
        """Answer one message, whole. `message_id` (the platform's) makes its episode
        idempotent under redelivery; `at` is when it was sent (now if not given)."""
        return await self.stream(
            user_id=user_id, thread_id=thread_id, text=text, message_id=message_id, at=at
        ).whole()

    def stream(
        self,
        *,
        user_id: str,
        thread_id: str,
        text: str,
        message_id: str | None = None,
        at: datetime | None = None,
    ) -> ReplyStream:
        """Answer one message as the model writes it (see `ReplyStream`); the same turn
        as `chat`. The thread's turn is held until the stream ends or is closed."""
        return ReplyStream(self._replying(user_id, thread_id, text, message_id, at))

    async def _replying(
        self,
        user_id: str,
        thread_id: str,
        text: str,
        message_id: str | None,
        at: datetime | None,
    ) -> AsyncGenerator[str | Reply, None]:
        """The turn: pieces of the answer's text, then the `Reply`."""
        started = time.perf_counter()
        thread_id = storable_id(thread_id)
        text = clean_text(text or "").strip()
        limit = self.settings.max_message_chars
        if not text:
            notice = self._notice("I didn't get any text. Send me a message and I'll answer.")
        elif len(text) > limit:
            notice = self._notice(
                f"That message is {len(text):,} characters long; I can read up to {limit:,}. "
                "Please shorten it or split it into parts."
            )
        else:
            notice = None
        if notice is not None:
            metrics.count_reply(notice, started)
            yield notice
            return
        # The episode's key derives from the message id: one per message, even redelivered.
        message_id = message_id or uuid.uuid4().hex
        sent = (at if at.tzinfo else at.replace(tzinfo=UTC)) if at else datetime.now(UTC)
        turn: dict[str, Any] = {"text": text, "message_id": message_id, "at": sent.isoformat()}
        message: AIMessage | None = None
        streamed = False
        try:
            async with self._turn(thread_id):  # first: turns of a thread keep their order
                owner = await self._turn_owner(user_id)
                config = {"configurable": {"thread_id": thread_id, "user_id": owner}}
                # One checkpoint write at the end of the turn instead of one per step: a
                # turn cut short leaves no trace either way (it is absent, not half there).
                async for mode, data in self.workflow.astream(
                    turn, config, durability="exit", stream_mode=["custom", "values"]
                ):
                    if mode == "custom" and isinstance(data, str) and data:
                        if not streamed:
                            metrics.first_text(started)
                            streamed = True
                        yield data
                    elif mode == "values" and isinstance(data, AIMessage):
                        message = data
            if message is None:
                raise RuntimeError("the turn ended without an answer")
        except Exception as err:
            # The conversation store (or its lock) is unreachable: nothing was answered and
            # nothing saved, so say so plainly instead of answering without the thread.
            logger.error(
                "turn failed for thread %s: %s", thread_id, type(err).__name__, exc_info=True
            )
            failed = Reply(
                text=STORAGE_APOLOGY, model=self.model.name, offline=self.model.offline, error=True
            )
            metrics.count_reply(failed, started)
            yield failed
            return
        said: list[BaseMessage] = [
            HumanMessage(text, id=message_id, additional_kwargs={"at": sent.isoformat()})
        ]
        if not message.response_metadata.get("error"):
            said.append(message)
        await self._learn_later(Pending(user_id, thread_id, said))
        metadata = message.response_metadata
        reply = Reply(
            text=str(message.content),
            model=metadata.get("model", self.model.name),
            offline=bool(metadata.get("offline", self.model.offline)),
            error=bool(metadata.get("error", False)),
        )
        metrics.count_reply(reply, started)
        yield reply

    async def _turn_owner(self, user_id: str) -> str:
        """Whose memories a turn recalls and keeps: the person, when linked. With the
        store unreachable the account itself: recall and the episode need the store too
        and degrade on their own, and the answer must not wait for it. (Learning looks
        the person up again when it runs.)"""
        try:
            return await self.identities.person(user_id)
        except Exception as err:
            logger.warning("identity lookup failed (%s); the turn goes on", type(err).__name__)
            return user_id

    async def _learn_later(self, pending: Pending) -> None:
        """Hand a turn's messages to the debounced writer; once it has closed (a turn
        finishing during shutdown), to the journal, which the next start learns from."""
        if not self.writer.closed and not self._draining:
            self.writer.submit(pending.thread_id, pending.user_id, pending.messages)
            return
        if self.journal is None:
            logger.warning("a turn finished after shutdown began; its learning is lost")
            return
        try:
            await self.journal.add(pending)
        except Exception:
            logger.warning("journal unavailable at shutdown; a turn's learning is lost")

    # -- the turn pipeline: accepted messages, exactly once --------------------------------

    def _lease(self) -> float:
        """How long an accepted message belongs to the process that took it: longer than
        any turn can run (the answer deadline, twice, plus a margin)."""
        return 2 * self.settings.answer_timeout_seconds + 60.0

    async def accept(self, inbound: Inbound) -> Ticket | None:
        """Take on a platform message: a `Ticket` to answer it with, or None when it was
        taken on before (a redelivery, a duplicate, another replica) or the bot is
        shutting down (then it stays in the inbox and is answered after the restart)."""
        # While draining, a message is recorded already orphaned: another replica (or
        # this one after its restart) answers it.
        lease = 0.0 if self._draining else self._lease()
        try:
            first = await self.inbox.accept(inbound, lease=lease)
        except Exception as err:
            # The inbox's database is down: answering without the record beats not
            # answering (a crash now would lose the message, a retry might be answered
            # twice; both are rarer than the outage itself).
            logger.warning("inbox unavailable (%s); answering without it", type(err).__name__)
            first = True
        if not first:
            metrics.DUPLICATES.inc()
            return None
        if self._draining:
            return None
        ticket = Ticket(self, inbound)
        self._track(ticket)
        return ticket

    def _track(self, ticket: Ticket) -> None:
        self._tickets.add(ticket)
        self._tickets_changed.set()

    async def _save_progress(self, inbound: Inbound) -> None:
        try:
            await self.inbox.progress(inbound, lease=self._lease())
        except Exception as err:  # delivery goes on; only a takeover would lack it
            logger.warning("inbox unavailable (%s); progress not saved", type(err).__name__)

    async def _close_ticket(self, ticket: Ticket, *, delivered: bool) -> None:
        try:
            if delivered:
                await self.inbox.done(ticket.inbound.key)
        except Exception as err:  # it is answered; a takeover may repeat the last part
            logger.warning("inbox unavailable (%s); answer not recorded", type(err).__name__)
        finally:
            self._tickets.discard(ticket)
            self._tickets_changed.set()

    def _stored_reply(self, text: str, *, error: bool = False) -> Reply:
        return Reply(text=text, model=self.model.name, offline=self.model.offline, error=error)

    async def _saved_answer(self, thread_id: str, message_id: str) -> str | None:
        """The answer the thread's checkpoint already holds for `message_id`, if the dead
        process got as far as saving the turn."""
        messages = await self.history(thread_id)
        for said, answer in itertools.pairwise(messages):
            if isinstance(said, HumanMessage) and said.id == message_id:
                return None if isinstance(answer, HumanMessage) else str(answer.content)
        return None

    async def takes_part_in(self, thread_id: str) -> bool:
        """Whether the bot has a conversation in `thread_id` (answers follow-ups there)."""
        return bool(await self.history(thread_id))

    async def resume_orphans(self, platform: str, resume: Resume) -> int:
        """Hand `platform`'s messages that a dead process accepted but never answered to
        `resume` (the adapter delivers the rest); returns how many were taken over."""
        if self._draining:
            return 0
        orphans = await self.inbox.orphans(platform, lease=self._lease())
        for inbound in orphans:
            metrics.TAKEN_OVER.inc()
            ticket = Ticket(self, inbound, taken_over=True)
            self._track(ticket)
            self._spawn(self._resume(ticket, resume), name=f"resume:{inbound.key}")
        if orphans:
            logger.info("inbox: %d unanswered %s message(s) taken over", len(orphans), platform)
        return len(orphans)

    async def _resume(self, ticket: Ticket, resume: Resume) -> None:
        try:
            await resume(ticket)
        except Exception:
            logger.exception("inbox: answering a taken-over message failed")
        finally:
            await ticket.release()  # a no-op after done(); else left for the next sweep

    def watch_orphans(self, platform: str, resume: Resume) -> None:
        """Take over `platform`'s orphaned messages now and every little while, until the
        bot closes (replicas: one that dies mid-turn is covered by the others)."""

        async def sweep_forever() -> None:
            while True:
                try:
                    await self.resume_orphans(platform, resume)
                except Exception as err:
                    logger.warning("inbox sweep failed (%s)", type(err).__name__)
                await asyncio.sleep(INBOX_SWEEP_SECONDS)

        self._spawn(sweep_forever(), name=f"inbox-sweep:{platform}")

    def _spawn(self, coro: Any, *, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self, grace: float | None = None) -> int:
        """Shutdown: take on no new message and give those in flight `grace` seconds
        (MEMBOT_SHUTDOWN_GRACE_SECONDS) to be answered. Returns how many were left
        unfinished: they stay in the inbox and are answered after the restart."""
        self._draining = True
        grace = self.settings.shutdown_grace_seconds if grace is None else grace
        try:
            async with asyncio.timeout(grace):
                while self._tickets:
                    self._tickets_changed.clear()
                    await self._tickets_changed.wait()
        except TimeoutError:
            logger.warning("shutdown: %d turn(s) unfinished, left in the inbox", len(self._tickets))
        return len(self._tickets)

    async def _close_writer(self) -> None:
        """After a drain, learning not started yet is journaled (the next start learns it)
        rather than run now, which could outlast the grace period; otherwise it runs."""
        if self._draining and self.journal is not None:
            for batch in self.writer.take_pending():
                for user_id in batch.user_ids:
                    await self._learn_later(
                        Pending(user_id, batch.thread_id, batch.messages[user_id])
                    )
        await self.writer.aclose()

    async def _stop_background(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _turn(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        return self.locks.thread_turn(thread_id)

    async def _after_turns(self, batch: Batch) -> None:
        """The writer's work for one thread: learn (journaled), then keep the checkpoint
        bounded."""
        for user_id in batch.user_ids:
            await self._learn(Pending(user_id, batch.thread_id, batch.messages[user_id]))
        await self.compact(batch.thread_id)

    async def _learn(self, pending: Pending) -> None:
        entry = None
        if self.journal is not None:
            try:
                entry = await self.journal.add(pending)
            except Exception:
                logger.warning("memory journal unavailable; learning without it", exc_info=True)
        try:
            await self._learn_for(pending)
        except Exception as err:
            kept = "kept in the journal for a retry" if entry is not None else "lost"
            logger.warning("memory learning failed (%s); %s", type(err).__name__, kept)
            return
        if entry is not None and self.journal is not None:
            await self.journal.remove(entry)

    async def _learn_for(self, pending: Pending) -> None:
        """Learning goes to whoever the account belongs to now: an account linked since
        the turn learns into the person's memories."""
        owner = await self.identities.person(pending.user_id)
        await self.memory.learn(owner, pending.thread_id, pending.messages)

    async def retry_journal(self, *, older_than: float | None = None) -> int:
        """Learn from journaled batches whose first attempt failed or was cut short (store
        outage, crash); returns how many were applied. Stops at the first failure."""
        if self.journal is None:
            return 0
        grace = self.settings.memory_retry_seconds if older_than is None else older_than

        return await self.journal.drain(self._learn_for, older_than=grace)

    async def _retry_journal_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.memory_retry_seconds)
            await self._finish_links_quietly()
            try:
                if applied := await self.retry_journal():
                    logger.info("memory journal: %d delayed batch(es) learnt", applied)
            except Exception as err:
                logger.info("memory journal: store still unavailable (%s)", type(err).__name__)

    async def compact(self, thread_id: str) -> bool:
        """Fold a thread's older messages into its summary if it is over budget."""
        if not over_budget(await self.thread(thread_id), self.settings.context_token_budget):
            return False
        config = {"configurable": {"thread_id": thread_id, "user_id": ""}}
        async with self._turn(thread_id):
            await self.workflow.ainvoke({"compact": True}, config, durability="exit")
        return True

    async def feedback(self, *, user_id: str, thread_id: str, message_id: str, good: bool) -> None:
        """A person's rating of the answer to their message `message_id` (a thumbs up or
        down under it): counted in the metrics and kept with that answer in the thread."""
        metrics.FEEDBACK.labels("good" if good else "bad").inc()
        thread_id = storable_id(thread_id)
        rating = {"message_id": message_id, "rating": "good" if good else "bad", "by": user_id}
        config = {"configurable": {"thread_id": thread_id, "user_id": user_id}}
        async with self._turn(thread_id):
            await self.workflow.ainvoke({"feedback": rating}, config, durability="exit")

    async def flush_memories(self) -> None:
        """Finish all pending after-turn work now (tests, tools, shutdown)."""
        await self.writer.flush()

    def _notice(self, text: str) -> Reply:
        return Reply(
            text=text, model=self.model.name, offline=self.model.offline, error=True, refused=True
        )

    async def thread(self, thread_id: str) -> ThreadState:
        """A thread's saved messages and running summary."""
        thread_id = storable_id(thread_id)
        saved = await self.checkpointer.aget_tuple({"configurable": {"thread_id": thread_id}})
        values = saved.checkpoint["channel_values"] if saved is not None else {}
        return thread_state(values.get(PREVIOUS_CHANNEL))

    async def history(self, thread_id: str) -> list[BaseMessage]:
        """A thread's saved messages (those not yet folded into its summary)."""
        return (await self.thread(thread_id))["messages"]

    async def forget_thread(self, thread_id: str) -> None:
        await self.checkpointer.adelete_thread(storable_id(thread_id))

    # -- memories ----------------------------------------------------------------------
    # Every call names an account (`user_id`, as the adapter knows it); the memories are
    # those of its person when it is linked (engine/identity.py), so one person is one
    # memory on every platform, and an account reaches no one else's.

    async def _owner(self, user_id: str) -> str:
        """Whose memories `user_id` acts on, once their learning in progress is done."""
        owner = await self.identities.person(user_id)
        for member in await self.identities.members(owner):
            await self.writer.flush(member)
        return owner

    async def memories(self, user_id: str, limit: int = 100) -> list[Item]:
        """The user's facts, newest first (after what they just said is learnt). Episodes,
        the messages themselves, are not listed: see `episodes()`."""
        owner = await self._owner(user_id)
        return await self.store.asearch(memory_namespace(owner), filter=FACTS_ONLY, limit=limit)

    async def memory_page(self, user_id: str, *, offset: int = 0, limit: int = 20) -> list[Item]:
        """One page of the user's facts, newest first (each with its kind, dates and
        source thread in its value), for a list a person pages through."""
        owner = await self._owner(user_id)
        return await self.store.asearch(
            memory_namespace(owner), filter=FACTS_ONLY, limit=limit, offset=offset
        )

    async def forget_memory(self, user_id: str, key: str) -> bool:
        """Erase one of the user's facts (theirs only: the key is looked up in their own
        memories); the history records it "by user". False if there is no such fact."""
        owner = await self._owner(user_id)  # learning in progress may be rewriting it
        return await self.memory.correct(owner, key, None) is not None

    async def edit_memory(self, user_id: str, key: str, text: str) -> Item | None:
        """The user's own correction of one fact, stored as they wrote it; None if there
        is no such fact of theirs (or the text is empty)."""
        text = clean_text(text or "").strip()
        if not text:
            return None
        owner = await self._owner(user_id)
        if await self.memory.correct(owner, key, text) is None:
            return None
        return await self.store.aget(memory_namespace(owner), key)

    async def export_memories(self, user_id: str) -> dict[str, Any]:
        """Everything held about the user, as one JSON-ready document
        (`engine/portability.py`): facts, episodes, history, conversation ids, and the
        accounts linked to them."""
        owner = await self._owner(user_id)
        document = await export_person(self.store, owner)
        document["user_id"] = user_id
        document["accounts"] = await self.identities.members(owner)
        return document

    async def import_memories(
        self, document: dict[str, Any], *, user_id: str | None = None
    ) -> dict[str, int]:
        """Load an export (into a fresh store, typically) for `user_id` (default: the
        account it was exported from); see `import_person`."""
        account = user_id or (document.get("user_id") if isinstance(document, dict) else None)
        owner = (
            await self.identities.person(account) if isinstance(account, str) and account else None
        )
        return await import_person(self.store, document, user_id=owner)

    async def episodes(self, user_id: str, limit: int = 100) -> list[Item]:
        """What the user said (questions included), kept verbatim, newest first."""
        owner = await self.identities.person(user_id)
        return await self.store.asearch(memory_namespace(owner), filter=EPISODES_ONLY, limit=limit)

    async def count_memories(
        self, user_id: str, limit: int = 1000, *, said_on_this_account: bool = False
    ) -> int:
        """How many memories a user has (up to `limit`), e.g. for a confirmation prompt.
        `said_on_this_account`: of a linked person, only those said on this account
        (what an admin of its tenancy would erase: `erase_member`)."""
        items = await self.memories(user_id, limit=limit)
        if not said_on_this_account:
            return len(items)
        others = [a for a in await self.linked_accounts(user_id) if a != user_id]
        if not others:
            return len(items)
        said_here = said_on(user_id, others)
        return sum(1 for i in items if said_here(str(i.value.get("source_thread") or "")))

    async def remember(self, user_id: str, text: str, *, source_thread: str = "") -> list[Item]:
        """Store an explicitly given fact (`/remember`). Text that is not a recognisable
        statement is stored as said."""
        text = clean_text(text or "").strip()
        if not text:
            return []
        owner = await self.identities.person(user_id)
        changes = await self.memory.remember(owner, source_thread, text)
        namespace = memory_namespace(owner)
        # Nothing changed when the fact was already stored verbatim: show that one.
        keys = [c.key for c in changes] or [f.key for f in extract_facts(f"remember: {text}")]
        stored = [await self.store.aget(namespace, key) for key in keys]
        return [item for item in stored if item is not None]

    async def memory_history(self, user_id: str, memory_key: str | None = None) -> list[dict]:
        """Why the bot believes what it does: the user's change log, oldest first."""
        owner = await self.identities.person(user_id)
        return await memory_history(self.store, owner, memory_key)

    async def forget(self, user_id: str) -> int:
        """Erase all of a user's memories (facts and episodes), their history and their
        journaled learning; returns how many facts there were (what `memories()` lists:
        the number a person is shown). Learning not yet run is dropped, learning already
        running is waited for, so nothing the user said before the erasure comes back.
        A linked person's memories are one: all of them go, the link stays."""
        owner = await self.identities.person(user_id)
        members = await self.identities.members(owner)
        for member in members:
            self.writer.discard(member)
            await self.writer.flush(member)  # only runs already in progress are left
            if self.journal is not None:
                await self.journal.discard(member)
            await self.inbox.discard(member)  # their messages awaiting a takeover, too
        namespace = memory_namespace(owner)
        async with self.locks.user_memory(owner):
            facts = await self.store.asearch(namespace, filter=FACTS_ONLY, limit=_ALL_FACTS)
            await adelete_namespace(self.store, namespace)
            await adelete_namespace(self.store, history_namespace(owner))
        return len(facts)

    async def erase_member(self, target: str, *, actor: str, platform: str) -> int:
        """An admin's erasure of another member's memories, audited. The adapter decides
        who is an admin; the engine that an admin acts only within their own tenancy (the
        workspace or server both accounts belong to). A linked member is first unlinked,
        taking what they said in this tenancy with them, and only that is erased: what
        they said on their other accounts is not this admin's to erase."""
        if tenancy_of(target) != tenancy_of(actor):
            raise PermissionError(f"{actor} may not erase memories outside their tenancy")
        if await self.identities.person(target) != target:
            await self.unlink(target, actor=actor)
        erased = await self.forget(target)
        await self.audit.record(
            "forget_memories", actor=actor, target=target, count=erased, platform=platform
        )
        return erased

    # -- linked accounts ---------------------------------------------------------------

    async def linked_accounts(self, user_id: str) -> list[str]:
        """The accounts sharing `user_id`'s memories, itself included."""
        return await self.identities.members(await self.identities.person(user_id))

    async def link_code(self, user_id: str) -> Code:
        """A one-time code that joins `user_id` with the account that types it
        (`link`): single use, valid 10 minutes; a new code replaces the last one."""
        async with self.locks.user_memory(LINKS_LOCK):
            return await self.identities.issue(user_id)

    async def link(self, user_id: str, code: str) -> LinkResult:
        """Join `user_id` with the account that issued `code`: one person from now on,
        their memories merged (history kept, a fact held twice kept once, the newer
        statement winning) and recalled from either side. Audited."""
        async with self.locks.user_memory(LINKS_LOCK):
            redeemed = await self.identities.redeem(user_id, code)
            if redeemed.issuer is None:
                return LinkResult(False, redeemed.refusal or "That code isn't valid.")
            issuer = redeemed.issuer
            if issuer == user_id:
                return LinkResult(
                    False, "That code is this account's own: type it on your other account."
                )
            mine = await self.identities.person(user_id)
            theirs = await self.identities.person(issuer)
            if mine == theirs:
                return LinkResult(True, "These accounts are already linked.")
            accounts = [
                *await self.identities.members(theirs),
                *await self.identities.members(mine),
            ]
            tenancies = [tenancy_of(account) for account in accounts]
            if len(set(tenancies)) < len(tenancies):
                return LinkResult(
                    False,
                    "Both accounts are in the same workspace or server; only accounts on "
                    "different platforms or workspaces can be linked.",
                )
            for account in accounts:
                await self.writer.flush(account)
            person = await self.identities.person_for(accounts)
            sources = [owner for owner in (theirs, mine) if owner != person]
            # Noted first: a crash anywhere after this is finished at the next start.
            change = {"op": "merge", "accounts": accounts, "sources": sources}
            await self._pending(person, change)
            await self.identities.join(accounts, person)
            moved = await self._merge(person, sources)
            await self.audit.record(
                "link", actor=user_id, target=issuer, count=moved.facts, person=person
            )
        others = len(accounts) - 1
        return LinkResult(
            True,
            f"Linked: you are one person here and on {others} other account"
            f"{'s' if others > 1 else ''}. I now remember {moved.facts} thing"
            f"{'s' if moved.facts != 1 else ''} about you on each of them"
            + (f" ({moved.merged} said on both kept once)." if moved.merged else "."),
            moved,
        )

    async def unlink(self, user_id: str, *, actor: str | None = None) -> LinkResult:
        """Separate `user_id` from its person from now on: what was said on this account
        (in its tenancy) comes back to it, the rest stays with the other accounts, and
        new memories stay on their own side. Audited."""
        async with self.locks.user_memory(LINKS_LOCK):
            person = await self.identities.person(user_id)
            members = await self.identities.members(person)
            if len(members) < 2:  # never linked, or the others have left
                return LinkResult(False, "This account isn't linked to any other.")
            for account in members:
                await self.writer.flush(account)
            others = [account for account in members if account != user_id]
            await self._pending(person, {"op": "split", "account": user_id, "others": others})
            await self.identities.leave(user_id)
            moved = await self._split(person, user_id, others)
            await self.audit.record(
                "unlink", actor=actor or user_id, target=user_id, count=moved.facts, person=person
            )
        return LinkResult(
            True,
            f"Unlinked. This account keeps the {moved.facts} thing"
            f"{'s' if moved.facts != 1 else ''} you told me here; what you say from now on "
            "stays on this account.",
            moved,
        )

    async def _pending(self, person: str, change: dict[str, Any]) -> None:
        """Note a link change before its memories move, so a crash midway is finished
        at the next start (`finish_links`); moving twice gives the same result."""
        await self.store.aput(LINK_PENDING, person, change, index=False)

    async def _merge(self, person: str, sources: list[str]) -> Moved:
        async with AsyncExitStack() as held:
            for owner in sorted({person, *sources}):
                await held.enter_async_context(self.locks.user_memory(owner))
            moved = await merge_into(self.store, sources, person)
        await self.store.adelete(LINK_PENDING, person)
        return moved

    async def _split(self, person: str, account: str, others: list[str]) -> Moved:
        async with AsyncExitStack() as held:
            for owner in sorted({person, account}):
                await held.enter_async_context(self.locks.user_memory(owner))
            moved = await split_off(self.store, person, account, belongs=said_on(account, others))
        await self.store.adelete(LINK_PENDING, person)
        return moved

    async def _finish_links_quietly(self) -> None:
        """At start and then with the journal's retries: a store that is down now must
        not stop the bot from starting; the link is finished once it is back."""
        try:
            await self.finish_links()
        except Exception as err:
            logger.warning("links: unfinished changes not checked (%s)", type(err).__name__)

    async def finish_links(self) -> int:
        """Finish link changes a crash interrupted; returns how many."""
        async with self.locks.user_memory(LINKS_LOCK):
            pending = await self.store.asearch(LINK_PENDING, limit=_ALL_FACTS)
            for item in pending:
                change = item.value
                if change.get("op") == "merge":
                    # Joining again is harmless; it may not have happened before the crash.
                    if accounts := [str(a) for a in change.get("accounts", [])]:
                        await self.identities.join(accounts, item.key)
                    await self._merge(item.key, [str(s) for s in change.get("sources", [])])
                elif change.get("op") == "split":
                    account = str(change.get("account"))
                    if await self.identities.person(account) == item.key:
                        await self.identities.leave(account)
                    others = [str(o) for o in change.get("others", [])]
                    await self._split(item.key, account, others)
        if pending:
            logger.info("links: %d interrupted change(s) finished", len(pending))
        return len(pending)


def said_on(account: str, others: list[str]) -> Callable[[str], bool]:
    """Whether a thread was said on `account` rather than on one of the `others` linked
    with it: the most specific tenancy a thread is in says whose it is (`discord` is a
    prefix of `discord:42`, and each may be a linked account's)."""
    mine, theirs = tenancy_of(account), [tenancy_of(other) for other in others]

    def here(thread: str) -> bool:
        return said_within(thread, mine) and not any(
            len(t) > len(mine) and said_within(thread, t) for t in theirs
        )

    return here


@dataclass(frozen=True)
class LinkResult:
    """What a link or unlink did, with the sentence to show the person."""

    ok: bool
    message: str
    moved: Moved | None = None
