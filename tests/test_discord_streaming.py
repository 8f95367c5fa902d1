"""Streamed answers on Discord, end to end: the real discord.py client against the fake
Discord, the real engine streaming from the fake model server, paced like a slow model.

What a person sees: "typing…" until the model's first words, then the reply, posted and
edited as it grows (about once a second, so Discord's per-channel limits hold), continued
in a new message past 2,000 characters; an `/ask` fills its "thinking…" response the same
way. Nothing pings anyone, on a post or an edit. A model failing mid-answer leaves its text
and a note. A process that dies mid-answer is succeeded by one that finishes the messages
already posted instead of posting the answer again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest

from bots.chunking import split_message
from bots.discord import MESSAGE_LIMIT, message_key
from bots.discord_stream import Held, digest
from engine.bot import MemoryBot
from engine.inbox import Inbound
from engine.memory.manager import MEMORY_TOOL
from engine.workflow import INTERRUPTED
from tests.fakes.discord import (
    APPLICATION_ID,
    CHANNEL_ID,
    GUILD_ID,
    MEMBER_ID,
    Call,
    FakeDiscord,
    Revision,
)
from tests.fakes.llm import FakeLLM, ToolUse, last_user_text
from tests.fakes.waits import eventually
from tests.llm_settings import fake_llm_options
from tests.test_discord import (
    CALLBACK,
    MEMBERS_THREAD,
    MESSAGES,
    Running,
    assert_no_pings,
    guilds,
    running,
    serving,
    settings_for,
)

FIRST_TOKEN_DELAY, TOKENS_PER_SECOND = 0.4, 40  # a slow model
PIECE = re.compile(r"\s*\S+|\s+")  # how the fake model cuts a text into streamed pieces
PINGS = "@everyone <@123> <@&42>"
# 135 words, each a piece: 3.4 s of writing at 40 pieces a second.
SHORT = " ".join(
    [f"Here is a slow answer for {PINGS}."]
    + [f"Sentence {n} of it goes on a little while." for n in range(14)]
)
# ~4,600 characters in five paragraphs that each start with pings: three messages.
LONG = "\n\n".join(
    f"{PINGS} Paragraph {n}: " + "the model keeps on writing about streams " * 22 for n in range(5)
).replace("streams \n", "streams.\n")
TYPING = "/channels/{channel_id}/typing"


def pieces(text: str) -> list[str]:
    return PIECE.findall(text)


def generation_seconds(text: str, tokens_per_second: float = TOKENS_PER_SECOND) -> float:
    """How long the fake model takes to write `text`, from its piece count (not wall time)."""
    return FIRST_TOKEN_DELAY + len(pieces(text)) / tokens_per_second


def model(answers: Callable[[str], str]) -> Callable[[dict[str, Any]], str | ToolUse]:
    """Chat: `answers(what the user said)`. Memory extraction: nothing worth keeping."""

    def reply(body: dict[str, Any]) -> str | ToolUse:
        if body.get("tools"):
            return ToolUse(MEMORY_TOOL.name, {"operations": []})
        return answers(last_user_text(body))

    return reply


def answers_in_turn(*texts: str) -> Callable[[str], str]:
    """Each chat request gets the next text (the last one again after that)."""
    asked: list[str] = []

    def answer(said: str) -> str:
        asked.append(said)
        return texts[min(len(asked), len(texts)) - 1]

    return answer


def handler_tasks(prefix: str) -> list[asyncio.Task[Any]]:
    """discord.py runs each event handler in a task of its own name."""
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(prefix)]


@asynccontextmanager
async def slow_bot(
    tmp_path, embeddings, answer: str, tokens_per_second: float = TOKENS_PER_SECOND
) -> AsyncIterator[tuple[Running, FakeLLM]]:
    """The bot on a slow model that answers everything with `answer`."""
    async with FakeLLM(model(lambda _: answer)) as llm:
        llm.first_token_delay, llm.tokens_per_second = FIRST_TOKEN_DELAY, tokens_per_second
        async with running(tmp_path, embeddings, **fake_llm_options(llm)) as run:
            yield run, llm


def position(fake: FakeDiscord, call: Call) -> int:
    return next(n for n, c in enumerate(fake.calls) if c is call)


def finished_before(llm: FakeLLM, fake: FakeDiscord, wanted: Callable[[Call], bool]) -> list[bool]:
    """For each request `wanted` picks, as it reached Discord: had the model finished a
    streamed answer? Noted at arrival, so no polling races the model."""
    seen: list[bool] = []
    fake.observe(lambda call: seen.append(bool(llm.streamed)) if wanted(call) else None)
    return seen


def check_growing(versions: list[Revision], final: str) -> None:
    """Each version of a message shows more of its final text, nothing else."""
    shown = [v.content or "" for v in versions]
    assert shown[-1] == final
    assert all(final.startswith(text.rstrip()) for text in shown), shown
    assert [len(text) for text in shown] == sorted(len(text) for text in shown)


async def test_a_mention_streams_into_one_message_edited_as_it_grows(
    tmp_path, local_embeddings
) -> None:
    async with slow_bot(tmp_path, local_embeddings, SHORT) as (run, llm):
        fake = run.fake
        created = finished_before(llm, fake, lambda c: c.method == "POST" and "messages" in c.path)
        mention = fake.message_create(
            MEMBER_ID, "tell me slowly", channel_id=CHANNEL_ID, mentions_bot=True
        )
        await fake.dispatch("MESSAGE_CREATE", mention)
        reply = await fake.wait_for_reply(mention)
        await run.settled()

    (post,) = fake.calls_to("POST", MESSAGES)
    assert post is reply and created == [False]  # posted while the model was still writing
    (typing, *_) = fake.calls_to("POST", TYPING)
    assert typing.path == f"/channels/{CHANNEL_ID}/typing"
    assert position(fake, typing) < position(fake, post)  # typing first
    versions = fake.versions(fake.made_by(post))
    edits = versions[1:]
    assert edits and all(v.call.method == "PATCH" for v in edits)
    assert len(edits) <= generation_seconds(SHORT) + 2  # about one a second, not per piece
    assert llm.streamed == [SHORT]
    check_growing(versions, SHORT)  # the final text is the model's, byte for byte
    for version in versions:
        assert_no_pings(version.call.json)


async def test_a_long_answer_rolls_over_into_more_messages(tmp_path, local_embeddings) -> None:
    """Past 2,000 characters the message is finished and the text goes on in the next one,
    while the model still writes; together they hold the answer, each part once."""
    parts = split_message(LONG, MESSAGE_LIMIT)
    assert len(parts) == 3
    # 10 s of writing: the first message is full after 4 s, long before the end.
    async with slow_bot(tmp_path, local_embeddings, LONG, tokens_per_second=80) as (run, llm):
        fake = run.fake
        created = finished_before(llm, fake, lambda c: c.method == "POST" and "messages" in c.path)
        mention = fake.message_create(
            MEMBER_ID, "tell me a lot", channel_id=CHANNEL_ID, mentions_bot=True
        )
        await fake.dispatch("MESSAGE_CREATE", mention)
        await fake.wait_for_reply(mention)
        await run.settled()

    posts = fake.calls_to("POST", MESSAGES)
    assert llm.streamed == [LONG]
    assert len(posts) == len(parts)  # one message per part, none posted twice
    assert created[:2] == [False, False]  # the second message came while the model wrote
    assert posts[0].json["message_reference"]["message_id"] == int(mention["id"])
    assert not any("message_reference" in p.json for p in posts[1:])
    ids = [fake.made_by(p) for p in posts]
    assert [fake.messages[i]["content"] for i in ids] == parts
    assert "".join(parts).replace(" ", "").replace("\n", "") == LONG.replace(" ", "").replace(
        "\n", ""
    )
    for message_id, part in zip(ids, parts, strict=True):
        versions = fake.versions(message_id)
        assert [v.call.method for v in versions].count("POST") == 1
        assert all(v.content is not None and len(v.content) <= MESSAGE_LIMIT for v in versions)
        assert versions[-1].content == part
        for version in versions:  # every post and every edit: nobody pinged
            assert_no_pings(version.call.json)


async def test_a_model_failing_mid_answer_leaves_its_text_and_a_note(
    tmp_path, local_embeddings
) -> None:
    async with slow_bot(tmp_path, local_embeddings, SHORT) as (run, llm):
        fake = run.fake
        llm.break_stream(5)
        mention = fake.message_create(MEMBER_ID, "go on", channel_id=CHANNEL_ID, mentions_bot=True)
        await fake.dispatch("MESSAGE_CREATE", mention)
        reply = await fake.wait_for_reply(mention)
        await run.settled()

    assert llm.streamed == []  # the stream broke
    (post,) = fake.calls_to("POST", MESSAGES)
    assert post is reply
    shown = fake.messages[fake.made_by(post)]["content"]
    partial = "".join(pieces(SHORT)[:5])
    before, after = INTERRUPTED.split("{cause}")
    assert re.fullmatch(re.escape(partial + before) + r"[^\n]+" + re.escape(after), shown), shown
    for version in fake.versions(fake.made_by(post)):
        assert_no_pings(version.call.json)


async def test_ask_streams_into_its_response_and_follow_ups(tmp_path, local_embeddings) -> None:
    """`/ask` is deferred ("thinking…"); the answer fills that response, edited as it grows,
    and goes on in follow-ups past 2,000 characters."""
    parts = split_message(LONG, MESSAGE_LIMIT)
    async with slow_bot(tmp_path, local_embeddings, LONG, tokens_per_second=120) as (run, llm):
        fake = run.fake
        first = finished_before(llm, fake, lambda c: c.path.endswith("/@original"))
        ask = await run.command("ask", {"question": "tell me a lot"}, user=MEMBER_ID)
        response = await run.response(ask)

    assert llm.streamed == [LONG]
    (deferral, *answering) = run.about(ask)
    assert deferral.path.endswith("/callback") and deferral.json["type"] == 5
    edits = [c for c in answering if c.method == "PATCH"]
    assert all(c.path.endswith("/@original") for c in edits[:2])  # the response, edited
    assert first[0] is False  # its first text arrived while the model was writing
    followups = [c for c in answering if c.method == "POST"]
    assert [c.query.get("wait") for c in followups] == ["1"] * 2  # ids kept, to edit them
    shown = [response["content"]] + [fake.messages[fake.made_by(c)]["content"] for c in followups]
    assert shown == parts
    original = fake.versions(response["id"])
    assert len(original) >= 3  # "thinking…", its first text, then edits
    assert original[0].content == "" and LONG.startswith(original[1].content or "-")
    for call in answering:
        assert_no_pings(call.json)


async def test_a_follow_up_while_the_answer_streams_is_answered(tmp_path, local_embeddings) -> None:
    """In a thread it takes part in, the bot answers without a mention (message content
    intent). Its first answer there shows before its turn is saved; a follow-up sent while
    it streams is to the bot all the same."""
    first = " ".join([SHORT] * 2)  # 7 s of writing
    async with FakeLLM(model(answers_in_turn(first, SHORT))) as llm:
        llm.first_token_delay, llm.tokens_per_second = FIRST_TOKEN_DELAY, TOKENS_PER_SECOND
        options = fake_llm_options(llm) | {"discord_message_content": True}
        async with running(tmp_path, local_embeddings, **options) as run:
            fake = run.fake
            typing = f"/channels/{MEMBERS_THREAD}/typing"
            # An answer shows typing as soon as it is taken on (before it waits its turn).
            taken_on = finished_before(llm, fake, lambda c: c.path == typing)
            mention = fake.message_create(
                MEMBER_ID, "hello", channel_id=MEMBERS_THREAD, mentions_bot=True
            )
            await fake.dispatch("MESSAGE_CREATE", mention)
            await fake.wait_for_reply(mention)
            follow_up = fake.message_create(MEMBER_ID, "and then?", channel_id=MEMBERS_THREAD)
            await fake.dispatch("MESSAGE_CREATE", follow_up)
            reply = await fake.wait_for_reply(follow_up)
            await run.settled()
            assert run.shown(reply) == SHORT
    assert taken_on[:2] == [False, False]  # the follow-up, while the first answer streamed


# -- a process dies mid-answer ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["mention", "ask"])
async def test_a_takeover_finishes_the_half_streamed_answer(
    tmp_path, local_embeddings, how: str
) -> None:
    """A process streams an answer, has posted (and edited) its first message, and dies
    (its handler is cancelled mid-answer: nothing after that runs but its clean-up). The
    next process on the same data takes it over and streams the answer into that message:
    it edits it, never posts it again."""
    first = " ".join([SHORT] * 3)  # 9 s of writing: it dies long before the end
    second = "A different, shorter answer from the second process, " + PINGS + "."
    async with FakeLLM(model(answers_in_turn(first, second))) as llm:
        llm.first_token_delay, llm.tokens_per_second = FIRST_TOKEN_DELAY, TOKENS_PER_SECOND
        options = fake_llm_options(llm)
        async with FakeDiscord(guilds=guilds()) as fake:
            with fake.patch_client():
                async with serving(fake, tmp_path, local_embeddings, **options) as dead:
                    event = await start_answering(dead, how)
                    await eventually(
                        lambda: len(fake.versions(event["answer"])) >= 2,
                        what="the first text posted, then edited",
                    )
                    handlers = handler_tasks(
                        "discord.py: on_message" if how == "mention" else "CommandTree-invoker"
                    )
                    for task in handlers:
                        task.cancel()
                    await asyncio.gather(*handlers, return_exceptions=True)
                    calls_before = len(fake.calls)
                async with serving(fake, tmp_path, local_embeddings, **options) as run:
                    await run.settled()
                    after = fake.calls[calls_before:]

    message_id = event["answer"]
    assert fake.messages[message_id]["content"] == second  # the answer in full
    assert llm.streamed.count(second) == 1  # the second process answered anew, once
    creating = [c for c in after if c.method == "POST" and not c.path.endswith("/typing")]
    assert creating == []  # nothing posted again
    edits = [v for v in fake.versions(message_id) if any(v.call is c for c in after)]
    assert edits and all(v.call.method == "PATCH" for v in edits)
    for version in fake.versions(message_id):
        if not version.call.path.endswith("/callback"):  # the deferral has no text
            assert_no_pings(version.call.json)


async def start_answering(run: Running, how: str) -> dict[str, Any]:
    """A mention or an `/ask`, with the id of the message its answer streams into."""
    fake = run.fake
    if how == "mention":
        mention = fake.message_create(
            MEMBER_ID, "tell me slowly", channel_id=CHANNEL_ID, mentions_bot=True
        )
        await fake.dispatch("MESSAGE_CREATE", mention)
        reply = await fake.wait_for_reply(mention)
        return mention | {"answer": fake.made_by(reply)}
    ask = await run.command("ask", {"question": "tell me slowly"}, user=MEMBER_ID)
    (deferral,) = await fake.wait_for(
        "POST", CALLBACK, where=lambda c: c.path.startswith(f"/interactions/{ask['id']}/")
    )
    return ask | {"answer": fake.made_by(deferral)}


async def test_a_takeover_leaves_finished_messages_alone(tmp_path, local_embeddings) -> None:
    """A process had the whole answer (three parts), finished the first message and was
    writing the second when it died. The next one edits the second to its part and posts
    the third; the first is not touched, nothing is posted twice."""
    parts = split_message(LONG, MESSAGE_LIMIT)
    async with FakeDiscord(guilds=guilds()) as fake:
        with fake.patch_client():
            mention = fake.message_create(
                MEMBER_ID, "tell me a lot", channel_id=CHANNEL_ID, mentions_bot=True
            )
            first = fake._message(
                APPLICATION_ID, parts[0], CHANNEL_ID, message_reference=mention_ref(mention)
            )
            half = parts[1][:700]
            second = fake._message(APPLICATION_ID, half, CHANNEL_ID)
            progress = [
                Held(int(first["id"]), len(parts[0]), digest(parts[0]), final=True).saved(),
                Held(int(second["id"]), len(half), digest(half)).saved(),
            ]
            config = settings_for(fake, tmp_path)
            async with MemoryBot.open(config, embeddings=local_embeddings) as dead:
                ticket = await dead.accept(accepted(mention))
                assert ticket is not None
                await ticket.note(reply=LONG, via="channel", messages=progress)
                # ... and the process dies.
            async with serving(fake, tmp_path, local_embeddings) as run:
                await run.settled()

    assert fake.versions(first["id"]) == []  # made before: never touched since
    (edit,) = fake.versions(second["id"])
    assert edit.call.method == "PATCH" and edit.content == parts[1]
    (post,) = fake.calls_to("POST", MESSAGES)
    assert fake.messages[fake.made_by(post)]["content"] == parts[2]
    assert "message_reference" not in post.json
    assert_no_pings(post.json)
    assert_no_pings(edit.call.json)


def mention_ref(mention: dict[str, Any]) -> dict[str, Any]:
    return {"message_id": mention["id"], "channel_id": str(CHANNEL_ID), "guild_id": str(GUILD_ID)}


def accepted(mention: dict[str, Any]) -> Inbound:
    """What the adapter accepts for `mention`."""
    return Inbound(
        key=message_key(int(mention["id"])),
        platform="discord",
        user_id=f"discord:{GUILD_ID}:{MEMBER_ID}",
        thread_id=f"discord:{GUILD_ID}:{CHANNEL_ID}",
        text="tell me a lot",
        message_id=mention["id"],
        at=datetime.now(UTC),
        route={"channel": CHANNEL_ID, "message": int(mention["id"])},
    )
