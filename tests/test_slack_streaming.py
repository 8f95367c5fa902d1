"""Answers stream into Slack as the model writes them: the real slack-bolt and slack_sdk
against the fake Slack (tests/fakes/slack.py, with streaming on), and the real model SDK
against the fake model (tests/fakes/llm.py), paced like a slow model.

No test waits on the clock: where one must show that text reached Slack before the model
finished, the fake model stops mid-answer (`ScriptedLLM.hold_after`) until the test has
seen that text arrive, so an adapter that waited for the end would never get it.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.chunking import split_message
from bots.slack import EVENTS, FEEDBACK_ACTION, STATUS, THINKING
from bots.slack_format import WORD_JOINER, escape, to_mrkdwn
from bots.slack_stream import MESSAGE_LIMIT, STREAM_LIMIT
from engine import metrics
from engine.bot import MemoryBot
from tests.fakes.llm import FakeLLM, ToolUse, _sse, _Stream
from tests.fakes.slack import (
    STREAM_METHODS,
    Call,
    FakeSlack,
    Message,
    app_mention,
    fresh_ts,
    message,
    streamed_text,
)
from tests.fakes.waits import eventually
from tests.llm_settings import fake_llm_settings
from tests.test_inbox import accepted_mention, settings_for, settled, slack_bot

SECRET = "test-signing-secret"
ROOT = Path(__file__).resolve().parents[1]
_SENTENCES = [
    "Green tea keeps its flavour best when the water is well below boiling.",
    "Steep it for two or three minutes and taste it before you add anything.",
    "Black tea wants hotter water and a little longer in the pot.",
    "Store the leaves in a dark and airtight tin away from spices.",
]
ANSWER = " ".join(_SENTENCES[n % 4] for n in range(10))  # 129 words: 3.2 s at 40 a second
TOKENS_PER_SECOND = 40


def pieces_of(text: str) -> list[str]:
    """How the fake model streams `text`: a word with its leading whitespace a piece."""
    return re.findall(r"\s*\S+|\s+", text)


def generation_seconds(text: str) -> float:
    """How long the paced fake model takes to write `text`, by its piece count."""
    return len(pieces_of(text)) / TOKENS_PER_SECOND


# -- the fake model, with a hold mid-answer ------------------------------------------------

_SENT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("sent", default=None)


class ScriptedLLM(FakeLLM):
    """The fake model answering `answer` (memory extraction: no operations), with two
    things a test decides: `pieces`, the exact pieces the answer streams in (else the
    fake's word by word), and `hold_after`: a streamed answer stops after that many pieces
    until `gate` is set."""

    def __init__(self, answer: str) -> None:
        super().__init__(reply=self._reply)
        self.answer = answer
        self.pieces: list[str] | None = None
        self.hold_after: int | None = None
        self.gate = threading.Event()

    def _reply(self, body: dict[str, Any]) -> str | ToolUse:
        if body.get("tools"):
            return ToolUse(body["tools"][0]["name"], {"operations": []})
        return self.answer

    def _messages(self, body: dict[str, Any]) -> web.Response | _Stream:
        answer = super()._messages(body)
        if isinstance(answer, _Stream) and answer.text is not None and self.pieces:
            assert "".join(self.pieces) == answer.text
            delta = {"type": "content_block_delta", "index": 0}
            answer.pieces = [
                _sse(delta | {"delta": {"type": "text_delta", "text": p}}, event=delta["type"])
                for p in self.pieces
            ]
        return answer

    async def _send_stream(self, request: web.Request, stream: _Stream) -> web.StreamResponse:
        token = _SENT.set([0] if stream.text is not None else None)
        try:
            return await super()._send_stream(request, stream)
        finally:
            _SENT.reset(token)

    async def _pause(self, seconds: float) -> None:
        """Called before each piece of a stream: past `hold_after`, wait for the gate."""
        sent = _SENT.get()
        if sent is not None and self.hold_after is not None:
            sent[0] += 1
            if sent[0] > self.hold_after:
                while not self.gate.is_set() and not self._stopping_now():  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        await super()._pause(seconds)


# -- the adapter against both fakes ----------------------------------------------------------


@dataclass
class Rig:
    slack: FakeSlack
    llm: ScriptedLLM
    bot: MemoryBot
    url: str

    async def deliver(self, event: dict[str, Any]) -> None:
        delivered = await self.slack.post_event(self.url, event)
        assert delivered.status == 200

    def release_when(self, condition: Callable[[], Any], what: str) -> asyncio.Task[None]:
        """Let the held model go on once `condition` holds (awaited by the test, so a
        condition that never comes true fails it with `what`)."""

        async def watch() -> None:
            await eventually(condition, what=what)
            self.llm.gate.set()

        return asyncio.create_task(watch())

    def text_reached_slack(self) -> bool:
        return any(streamed_text(c.args) for c in self.stream_calls())

    def stream_calls(self) -> list[Call]:
        return [c for c in self.slack.calls if c.method in STREAM_METHODS]

    async def stopped(self, count: int = 1, channel: str | None = None) -> list[Call]:
        """The first `count` stopStream calls (in `channel`), once the tickets are closed."""
        stops = await self.slack.wait_for(
            "chat.stopStream", count, where=lambda c: channel in (None, c.args["channel"])
        )
        await settled(self.bot)
        return stops

    def streamed_message(self, stop: Call) -> Message:
        return self.slack.messages[stop.args["ts"]]


@asynccontextmanager
async def running(
    tmp_path: Path, embeddings: Any, *, streaming: bool = True, paced: bool = True
) -> AsyncIterator[Rig]:
    async with FakeSlack(signing_secret=SECRET, streaming=streaming) as slack:
        async with ScriptedLLM(ANSWER) as llm:
            if paced:
                llm.first_token_delay, llm.tokens_per_second = 0.4, TOKENS_PER_SECOND
            settings = fake_llm_settings(
                llm,
                tmp_path,
                "anthropic",
                slack_bot_token="xoxb-test",
                slack_signing_secret=SECRET,
                slack_api_url=slack.api_url,
            )
            try:
                async with slack_bot(slack, tmp_path, embeddings, settings) as (bot, url):
                    yield Rig(slack, llm, bot, url)
            finally:
                llm.gate.set()


def feedback_values(blocks: list[dict[str, Any]]) -> dict[str, str]:
    """The feedback buttons' values under an answer: {"good": ..., "bad": ...}."""
    (block,) = [b for b in blocks if b["type"] == "context_actions"]
    (buttons,) = block["elements"]
    assert buttons["type"] == "feedback_buttons" and buttons["action_id"] == FEEDBACK_ACTION
    return {
        "good": buttons["positive_button"]["value"],
        "bad": buttons["negative_button"]["value"],
    }


# -- streaming ---------------------------------------------------------------------------


async def test_a_mention_streams_while_the_model_writes(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings) as rig:
        slack, llm = rig.slack, rig.llm
        llm.hold_after = 10
        released = rig.release_when(rig.text_reached_slack, "streamed text in Slack")
        mention = app_mention("U1", "<@UBOT> how do I make tea?", channel="C1")
        await rig.deliver(mention)
        await released  # the first text reached Slack while the model had 119 pieces to go
        (stop,) = await rig.stopped()

        calls = rig.stream_calls()
        assert [c.method for c in calls[:1] + calls[-1:]] == ["chat.startStream", "chat.stopStream"]
        assert {c.method for c in calls[1:-1]} == {"chat.appendStream"}
        start = calls[0].args
        assert (start["channel"], start["thread_ts"]) == ("C1", mention["ts"])  # in its thread
        assert (start["recipient_user_id"], start["recipient_team_id"]) == ("U1", "T1")
        assert {c.args["ts"] for c in calls[1:]} == {stop.args["ts"]}
        joined = "".join(streamed_text(c.args) for c in calls)
        assert joined == llm.streamed[-1] == ANSWER  # byte for byte
        appends = len(slack.calls_to("chat.appendStream"))
        assert appends <= generation_seconds(ANSWER) + 2

        streamed = rig.streamed_message(stop)
        assert streamed.body == ANSWER and not streamed.streaming
        assert set(feedback_values(streamed.blocks)) == {"good", "bad"}
        # The first answer did not know yet that Slack streams here: it showed a
        # placeholder, which the stream replaced. Nothing but the answer remains.
        (placeholder,) = slack.calls_to("chat.postMessage")
        assert placeholder.args["text"] == THINKING
        assert slack.bot_messages("C1", mention["ts"]) == [streamed]

        # Known now: the next answer starts its stream with its first text, nothing before.
        again = app_mention("U1", "<@UBOT> and black tea?", channel="C2")
        await rig.deliver(again)
        (second,) = await rig.stopped(channel="C2")
        starts = [c for c in slack.calls_to("chat.startStream") if c.args["channel"] == "C2"]
        assert len(starts) == 1 and streamed_text(starts[0].args)
        assert len(slack.calls_to("chat.postMessage")) == 1
        assert slack.bot_messages("C2") == [rig.streamed_message(second)]
        assert rig.streamed_message(second).body == ANSWER


async def test_an_assistant_thread_shows_a_status_until_the_first_text(
    tmp_path, local_embeddings
) -> None:
    async with running(tmp_path, local_embeddings) as rig:
        slack = rig.slack
        rig.llm.hold_after = 5
        released = rig.release_when(rig.text_reached_slack, "streamed text in Slack")
        parent = fresh_ts()  # the assistant thread (a DM thread)
        await rig.deliver(message("U1", "how do I make tea?", channel="D1", thread_ts=parent))
        await released
        (stop,) = await rig.stopped()

        methods = [c.method for c in slack.calls]
        first_text = next(i for i, c in enumerate(slack.calls) if streamed_text(c.args))
        (status,) = slack.calls_to("assistant.threads.setStatus")
        assert methods.index("assistant.threads.setStatus") < first_text
        assert (status.args["channel_id"], status.args["thread_ts"]) == ("D1", parent)
        assert status.args["status"] == STATUS and status.args["loading_messages"]
        assert slack.calls_to("chat.postMessage") == []  # the status is the progress
        streamed = rig.streamed_message(stop)
        assert streamed.body == rig.llm.streamed[-1] == ANSWER and streamed.thread_ts == parent
        assert slack.status_of("D1", parent) == ""  # nothing still "thinking"
        assert slack.bot_messages("D1", parent) == [streamed]


@pytest.mark.parametrize(
    ("refusal", "elsewhere"),
    [("not_allowed", "streams"), ("method_not_supported", "edits")],
)
async def test_where_slack_refuses_to_stream_the_placeholder_is_edited(
    refusal: str, elsewhere: str, tmp_path, local_embeddings
) -> None:
    async with running(tmp_path, local_embeddings) as rig:
        slack = rig.slack
        slack.fail("chat.startStream", error=refusal)
        rig.llm.hold_after = 40  # a second of the answer

        def edited_with_text() -> bool:
            return any(c.args["text"] != THINKING for c in slack.calls_to("chat.update"))

        released = rig.release_when(edited_with_text, "an edit while the model is held")
        mention = app_mention("U1", "<@UBOT> how do I make tea?", channel="C1")
        await rig.deliver(mention)
        await released  # the placeholder grew while the model still had pieces to write
        await slack.wait_for("chat.update", where=lambda c: c.args["text"] == ANSWER)
        await settled(rig.bot)

        (placeholder,) = slack.calls_to("chat.postMessage")
        assert placeholder.args["text"] == THINKING
        updates = slack.calls_to("chat.update")
        assert len(updates) <= generation_seconds(ANSWER) + 3
        assert len(updates) >= 2 and updates[-1].args["text"] == ANSWER
        assert [m.body for m in slack.bot_messages("C1", mention["ts"])] == [ANSWER]
        assert len(slack.calls_to("chat.startStream")) == 1

        # Refused in one conversation: it edits there from now on; refused as a method:
        # it edits everywhere. (The next start would work: `fail` refused one.)
        await rig.deliver(app_mention("U1", "<@UBOT> again?", channel="C1"))
        await slack.wait_for(
            "chat.update", 2, where=lambda c: c.args["text"] == ANSWER and c.args["channel"] == "C1"
        )
        assert len(slack.calls_to("chat.startStream")) == 1
        await rig.deliver(app_mention("U1", "<@UBOT> and elsewhere?", channel="C2"))
        if elsewhere == "streams":
            await rig.stopped(channel="C2")
            assert len(slack.calls_to("chat.startStream")) == 2
        else:
            await slack.wait_for(
                "chat.update",
                where=lambda c: c.args["text"] == ANSWER and c.args["channel"] == "C2",
            )
            assert len(slack.calls_to("chat.startStream")) == 1
        await settled(rig.bot)


def long_answer() -> str:
    """~24,000 characters: prose, a code block longer than a streamed message, prose."""
    prose = "\n\n".join(" ".join(_SENTENCES) for _ in range(20))
    code = "\n".join(f"cups_{n} = {n}  # line {n}" for n in range(520))
    return f"{prose}\n\n```python\n{code}\n```\n\n{prose}"


@pytest.mark.parametrize("way", ["stream", "edits"])
async def test_a_long_answer_rolls_over_into_messages_that_join_to_it(
    way: str, tmp_path, local_embeddings
) -> None:
    async with running(tmp_path, local_embeddings, paced=False) as rig:
        slack, answer = rig.slack, long_answer()
        rig.llm.answer = answer
        if way == "stream":
            mention = app_mention("U1", "<@UBOT> tell me a lot", channel="C1")
            await rig.deliver(mention)
            await rig.stopped()
            messages, limit = slack.bot_messages("C1", mention["ts"]), STREAM_LIMIT
            assert all(m.streamed and not m.streaming for m in messages)
            assert [bool(m.blocks) for m in messages] == [False] * (len(messages) - 1) + [True]
        else:  # a top-level DM cannot stream: parts are posted and edited, in mrkdwn
            await rig.deliver(message("U1", "tell me a lot", channel="D1"))
            await slack.wait_for("chat.postMessage", 2)
            await settled(rig.bot)
            messages, limit = slack.bot_messages("D1"), MESSAGE_LIMIT
            assert not any(m.streamed for m in messages)
        bodies = [m.body for m in messages]
        assert len(bodies) >= 2 and all(len(b) <= limit for b in bodies)
        # A code block cut in two is closed at the end of one message and reopened at the
        # start of the next; apart from that the messages are the answer, nothing lost or
        # repeated.
        assert all(b.count("```") % 2 == 0 for b in bodies)
        joined = "".join(bodies).replace("\n``````python\n", "")
        assert joined == rig.llm.streamed[-1] == answer
        assert "".join(bodies).count("\n``````python\n") >= 1


@pytest.mark.parametrize("streaming", [True, False])
async def test_broadcast_mentions_arrive_escaped_even_split_across_pieces(
    streaming: bool, tmp_path, local_embeddings
) -> None:
    async with running(tmp_path, local_embeddings, streaming=streaming) as rig:
        slack, llm = rig.slack, rig.llm
        llm.pieces = ["Sure, ping @he", "re now, <!chan", "nel> and @Every", "one & more", "."]
        llm.answer = "".join(llm.pieces)
        llm.hold_after = 1  # the first piece ends inside "@here": its flush must hold it back

        def some_text() -> bool:
            return rig.text_reached_slack() or any(
                c.args["text"] != THINKING for c in slack.calls_to("chat.update")
            )

        released = rig.release_when(some_text, "text in Slack while the model is held")
        await rig.deliver(app_mention("U1", "<@UBOT> say it", channel="C1"))
        await released
        await settled(rig.bot)
        (shown,) = [m.body for m in slack.bot_messages("C1")]
        assert shown == escape(llm.answer)
        assert f"@{WORD_JOINER}here" in shown and f"@{WORD_JOINER}Every" in shown
        assert "&lt;!channel&gt;" in shown and "&amp;" in shown
        sent = [streamed_text(c.args) for c in rig.stream_calls()]
        if streaming:  # streamed to the end: nothing had to be taken back and rewritten
            assert "".join(sent) == shown and slack.calls_to("chat.update") == []
        sent += [
            c.args["text"] for c in slack.calls if c.method in ("chat.update", "chat.postMessage")
        ]
        active = re.compile(r"<!|@(?:here|channel|everyone)", re.I)
        assert sent and not any(active.search(text) for text in sent), sent


async def test_a_model_failing_mid_answer_ends_with_its_note(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings) as rig:
        rig.llm.break_stream(5)
        mention = app_mention("U1", "<@UBOT> how do I make tea?", channel="C1")
        await rig.deliver(mention)
        (stop,) = await rig.stopped()
        streamed = rig.streamed_message(stop)
        partial = "".join(pieces_of(ANSWER)[:5])
        assert streamed.body.startswith(partial + "\n\n_(I was cut off there")
        assert not streamed.streaming  # stopped, not left "writing"
        assert streamed.body == "".join(streamed_text(c.args) for c in rig.stream_calls())
        # The thread keeps the partial answer, marked interrupted (the note is for the reader).
        (_, answered) = await rig.bot.history(f"slack:T1:C1:{mention['ts']}")
        assert answered.content == partial and answered.response_metadata["interrupted"]


async def test_feedback_buttons_rate_the_answer(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings, paced=False) as rig:
        slack = rig.slack
        mention = app_mention("U1", "<@UBOT> how do I make tea?", channel="C1")
        await rig.deliver(mention)
        (stop,) = await rig.stopped()
        values = feedback_values(stop.args["blocks"])
        thread = f"slack:T1:C1:{mention['ts']}"

        def count(rating: str) -> float:
            sample = metrics.REGISTRY.get_sample_value("membot_feedback_total", {"rating": rating})
            return sample or 0.0

        good_before = count("good")
        # Someone else in the thread: told privately that the rating is the asker's.
        click = slack.block_actions_payload(
            "U2", FEEDBACK_ACTION, values["good"], channel_id="C1",
            message_ts=stop.args["ts"], action_type="feedback_buttons",
        )  # fmt: skip
        await slack.post_interaction(rig.url, click)
        (refused,) = await slack.wait_for_responses(1)
        assert refused["response_type"] == "ephemeral" and "Only the person" in refused["text"]
        # The person who asked.
        click = slack.block_actions_payload(
            "U1", FEEDBACK_ACTION, values["good"], channel_id="C1",
            message_ts=stop.args["ts"], action_type="feedback_buttons",
        )  # fmt: skip
        delivered = await slack.post_interaction(rig.url, click)
        assert delivered.status == 200
        await eventually(lambda: count("good") == good_before + 1, what="the rating counted")

        async def kept() -> Any:
            (_, answer) = await rig.bot.history(thread)
            return answer.response_metadata.get("feedback")

        assert await eventually(kept, what="the rating kept") == {
            "rating": "good",
            "by": "slack:T1:U1",
        }
        assert count("good") == good_before + 1  # the refused click was not counted
        assert len(slack.responses) == 1


async def test_a_broken_stream_is_finished_with_edits(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings) as rig:
        slack = rig.slack
        # The first append fails, and the client's one retry of a 5xx too.
        slack.fail("chat.appendStream", error="internal_error", status=500, times=2)
        mention = app_mention("U1", "<@UBOT> how do I make tea?", channel="C1")
        await rig.deliver(mention)
        await slack.wait_for("chat.update", where=lambda c: c.args["text"] == ANSWER)
        await settled(rig.bot)
        (streamed,) = slack.bot_messages("C1", mention["ts"])
        assert streamed.streamed and not streamed.streaming  # stopped, then rewritten
        assert streamed.body == ANSWER
        assert {c.args["ts"] for c in slack.calls_to("chat.update")} == {streamed.ts}


# -- takeovers -------------------------------------------------------------------------------


@pytest.mark.parametrize("died", ["answered", "answering", "rolled-over"])
async def test_a_takeover_finishes_a_half_streamed_answer_once(
    died: str, tmp_path, local_embeddings
) -> None:
    async with FakeSlack(signing_secret=SECRET, streaming=True) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        said = accepted_mention("Hi! Remember: my name is Bob")
        ts = said.message_id
        recipient = {"recipient_user_id": "U1", "recipient_team_id": "T1"}

        async def stream(text: str) -> str:
            started = await client.chat_startStream(
                channel="C1", thread_ts=ts, markdown_text=text, **recipient
            )
            return started["ts"]

        # A first process streamed part of the answer and died.
        async with MemoryBot.open(
            settings_for(slack, tmp_path), embeddings=local_embeddings
        ) as bot:
            ticket = await bot.accept(said)
            assert ticket is not None
            thinking = await client.chat_postMessage(channel="C1", thread_ts=ts, text=THINKING)
            if died == "answering":  # the model had not finished: the answer is asked again
                await ticket.note(placeholder=await stream("[offl"), obsolete=thinking["ts"])
            else:
                answer = (await ticket.answer()).text
                if died == "answered":
                    await ticket.note(placeholder=await stream(answer[:12]))
                    await ticket.note(obsolete=thinking["ts"])
                else:  # a first message finished, the second half written
                    first = await stream(answer[:10])
                    await client.chat_stopStream(channel="C1", ts=first)
                    await ticket.note(
                        earlier=[first], offset=10, placeholder=await stream(answer[10:14])
                    )
                    await ticket.note(obsolete=thinking["ts"])
        before = len(slack.calls)

        async with slack_bot(slack, tmp_path, local_embeddings) as (bot, _):
            await settled(bot)
            (_, answered) = await bot.history(said.thread_id)
        answer = str(answered.content)
        after = slack.calls[before:]
        assert "chat.postMessage" not in {c.method for c in after}  # nothing posted twice
        assert not any(c.method in STREAM_METHODS for c in after)
        messages = slack.bot_messages("C1", ts)  # the placeholder is gone
        if died == "rolled-over":
            assert [m.body for m in messages] == [answer[:10], to_mrkdwn(answer[10:])]
            assert [c.args["ts"] for c in after if c.method == "chat.update"] == [messages[1].ts]
        else:
            assert [m.body for m in messages] == [to_mrkdwn(answer)]
            assert "Bob" in answer


async def test_an_entry_an_older_version_left_half_posted_gets_the_rest(
    tmp_path, local_embeddings
) -> None:
    """Before streaming, progress was `posted`: how many parts of the whole answer's
    mrkdwn were in Slack. Such an entry, taken over, gets the parts after those."""
    async with FakeSlack(signing_secret=SECRET) as slack:
        said, answer = accepted_mention("tell me a lot"), long_answer()
        async with MemoryBot.open(
            settings_for(slack, tmp_path), embeddings=local_embeddings
        ) as bot:
            ticket = await bot.accept(said)
            assert ticket is not None
            await ticket.note(reply=answer, placeholder="1700000000.000001", posted=2)
        async with slack_bot(slack, tmp_path, local_embeddings) as (bot, _):
            await settled(bot)
        parts = split_message(to_mrkdwn(answer), MESSAGE_LIMIT)
        assert len(parts) > 3
        assert [c.args["text"] for c in slack.calls_to("chat.postMessage")] == parts[2:]
        assert slack.calls_to("chat.update") == []


async def test_the_fake_streams_as_slack_sdk_expects() -> None:
    """The fake's streaming methods against slack_sdk's own helper (tests/fakes/slack.py)."""
    async with FakeSlack(streaming=True) as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.1", status="hm")
        assert slack.status_of("D1", "1.1") == "hm"
        stream = await client.chat_stream(
            channel="D1", thread_ts="1.1", recipient_team_id="T1", recipient_user_id="U1",
            buffer_size=5,
        )  # fmt: skip
        assert await stream.append(markdown_text="**he") is None  # buffered by the SDK
        await stream.append(markdown_text="llo**")
        await stream.stop(markdown_text=" there", blocks=[{"type": "divider"}])
        (streamed,) = slack.bot_messages("D1", "1.1")
        assert (streamed.body, streamed.blocks, streamed.streaming) == (
            "**hello** there",
            [{"type": "divider"}],
            False,
        )
        assert slack.status_of("D1", "1.1") == ""  # the reply cleared the status
        with pytest.raises(SlackApiError, match="message_not_in_streaming_state"):
            await client.chat_appendStream(channel="D1", ts=streamed.ts, markdown_text="more")
        with pytest.raises(SlackApiError, match="missing_recipient_user_id"):
            await client.chat_startStream(channel="C1", thread_ts="1.1", recipient_team_id="T1")
        with pytest.raises(SlackApiError, match="msg_too_long"):
            await client.chat_startStream(
                channel="C1", thread_ts="1.1", recipient_team_id="T1", recipient_user_id="U1",
                markdown_text="x" * 12_001,
            )  # fmt: skip
        slack.streaming = False  # a Slack without text streaming
        with pytest.raises(SlackApiError, match="unknown_method"):
            await client.chat_startStream(
                channel="C1", thread_ts="1.1", recipient_team_id="T1", recipient_user_id="U1"
            )


# -- the manifest ----------------------------------------------------------------------------


def test_the_manifest_subscribes_what_the_adapter_listens_to() -> None:
    manifest = yaml.safe_load((ROOT / "deploy" / "slack-manifest.yaml").read_text())
    subscribed = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    wanted = {e for e in EVENTS if e != "message"}
    wanted |= {"message.channels", "message.groups", "message.im"}  # what `message` hears
    assert wanted <= subscribed
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat:write: messages, streams (chat.*Stream) and the assistant status line.
    assert {"chat:write", "app_mentions:read", "im:history", "channels:history"} <= scopes
    assert manifest["settings"]["interactivity"]["is_enabled"]  # the feedback buttons
    assert manifest["features"]["assistant_view"]
