"""The App Home tab ("What I remember about you") and the /memories list, end to end:
real slack-bolt and slack_sdk against the fake Slack, in HTTP mode and Socket Mode, with
the offline model. Every click is a `block_actions` payload built from the view the fake
Slack holds (the button's own value), every dialog a `view_submission`."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack_home import EDIT_BLOCK, EDIT_INPUT
from engine.bot import MemoryBot
from engine.memory.namespace import memory_namespace
from tests.fakes.slack import FakeSlack, app_home_opened
from tests.fakes.waits import eventually
from tests.test_slack import SECRET, Harness, running_adapter

THINGS = ["tea", "jazz", "cats", "rain", "chess", "bread", "snow", "maps", "owls", "figs"]
THINGS += ["kites", "moss"]


class Home(Harness):
    """The running adapter, with what a person does on their Home tab."""

    async def published(self, user: str, count: int) -> dict[str, Any]:
        """The Home tab `user` sees once `count` views were published for them."""
        await self.slack.wait_for("views.publish", count, where=lambda c: c.args["user_id"] == user)
        assert self.slack.view_errors == []  # Slack took every view (limits, shapes)
        return self.slack.home_of(user)

    async def open(self, user: str) -> dict[str, Any]:
        before = self.publishes(user)
        await self.deliver_event(app_home_opened(user))
        return await self.published(user, before + 1)

    async def click(self, user: str, view: dict, block_id: str, action_id: str) -> dict[str, Any]:
        """Click a button of `view` as `user`; the Home tab republished after it."""
        before = self.publishes(user)
        payload = self.slack.view_action_payload(user, view, block_id, action_id)
        await self.deliver_action(payload)
        return await self.published(user, before + 1)

    def publishes(self, user: str) -> int:
        return len([c for c in self.slack.calls_to("views.publish") if c.args["user_id"] == user])


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(signing_secret=SECRET) as fake:
        for user in ("U1", "U2"):
            fake.users[user] = {"id": user, "is_admin": False, "is_owner": False, "team_id": "T1"}
        yield fake


@pytest.fixture(params=["http", "socket"])
async def home(request, slack, tmp_path: Path, local_embeddings) -> AsyncIterator[Home]:
    async with running_adapter(Home, request.param, slack, tmp_path, local_embeddings) as run:
        yield run


async def remember(bot: MemoryBot, user: str, things: list[str]) -> None:
    for thing in things:
        await bot.remember(f"slack:T1:{user}", f"I like {thing}")


def memory_sections(view: dict) -> list[dict]:
    return [b for b in view["blocks"] if re.fullmatch(r"memory-\d+", b.get("block_id", ""))]


def shown_texts(view: dict) -> list[str]:
    """Each memory's text as its section shows it (its first line; the date follows)."""
    return [b["text"]["text"].split("\n")[0] for b in memory_sections(view)]


def action_ids(view: dict) -> set[str]:
    return {e["action_id"] for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]}


def block_of(view: dict, text: str) -> str:
    """The block_id of the memory whose text starts with `text`."""
    (found,) = [b["block_id"] for b in memory_sections(view) if b["text"]["text"].startswith(text)]
    return found


async def texts(bot: MemoryBot, user: str) -> list[str]:
    return [m.value["text"] for m in await bot.memories(f"slack:T1:{user}")]


async def test_home_pages_through_the_memories(home: Home) -> None:
    await remember(home.bot, "U1", THINGS)
    newest_first = await texts(home.bot, "U1")
    assert len(newest_first) == 12

    first = await home.open("U1")
    assert first["type"] == "home"
    assert first["blocks"][0]["text"]["text"] == "What I remember about you"
    assert shown_texts(first) == newest_first[:10]
    assert all(
        re.search(r"saved \d{4}-\d\d-\d\d", b["text"]["text"]) for b in memory_sections(first)
    )
    assert "home_next" in action_ids(first) and "home_previous" not in action_ids(first)

    second = await home.click("U1", first, "home-pages", "home_next")
    assert shown_texts(second) == newest_first[10:]
    assert "home_previous" in action_ids(second) and "home_next" not in action_ids(second)
    back = await home.click("U1", second, "home-pages", "home_previous")
    assert shown_texts(back) == newest_first[:10]


async def test_the_messages_tab_publishes_nothing(home: Home) -> None:
    await remember(home.bot, "U1", ["tea"])
    await home.deliver_event(app_home_opened("U1", tab="messages"))
    await home.open("U2")  # the sentinel: it was delivered after, and is answered
    assert home.publishes("U1") == 0


async def test_forget_one_memory(home: Home) -> None:
    await remember(home.bot, "U1", ["tea", "jazz", "cats"])
    view = await home.open("U1")
    block = block_of(view, "I like jazz")
    after = await home.click("U1", view, f"{block}-actions", "home_forget")
    assert sorted(await texts(home.bot, "U1")) == ["I like cats.", "I like tea."]
    assert sorted(shown_texts(after)) == ["I like cats.", "I like tea."]


async def test_edit_a_memory_in_a_dialog(home: Home) -> None:
    slack = home.slack
    await remember(home.bot, "U1", ["tea", "jazz"])
    view = await home.open("U1")
    block = block_of(view, "I like tea")
    payload = slack.view_action_payload("U1", view, f"{block}-actions", "home_edit")
    await home.deliver_action(payload)
    (opened,) = await slack.wait_for("views.open")
    assert opened.args["trigger_id"] == payload["trigger_id"]
    modal = slack.views[-1]
    assert modal["type"] == "modal" and slack.view_errors == []
    (field,) = [b for b in modal["blocks"] if b["type"] == "input"]
    assert field["element"]["type"] == "plain_text_input"
    assert field["element"]["initial_value"] == "I like tea."

    # An empty answer is refused in the dialog, which stays open; nothing changes.
    empty = slack.view_submission_payload("U1", modal, {EDIT_BLOCK: {EDIT_INPUT: "  "}})
    refused = await home.deliver_action(empty)
    body = json.loads(refused.body_text) if hasattr(refused, "body_text") else refused.payload
    assert body["response_action"] == "errors" and EDIT_BLOCK in body["errors"]

    before = home.publishes("U1")
    changed = {EDIT_BLOCK: {EDIT_INPUT: "I like green tea"}}
    await home.deliver_action(slack.view_submission_payload("U1", modal, changed))
    after = await home.published("U1", before + 1)
    assert sorted(await texts(home.bot, "U1")) == ["I like green tea", "I like jazz."]
    assert sorted(shown_texts(after)) == ["I like green tea", "I like jazz."]


async def test_forget_everything_behind_a_confirmation(home: Home) -> None:
    await remember(home.bot, "U1", ["tea", "jazz"])
    await remember(home.bot, "U2", ["coffee"])
    view = await home.open("U1")
    (button,) = [
        e for b in view["blocks"] if b["type"] == "actions" for e in b["elements"]
        if e["action_id"] == "home_forget_all"
    ]  # fmt: skip
    assert button["confirm"]["confirm"]["text"] and button["style"] == "danger"
    after = await home.click("U1", view, "home-all", "home_forget_all")
    assert await home.bot.memories("slack:T1:U1") == []
    assert memory_sections(after) == []
    assert "erased 2" in json.dumps(after["blocks"])
    assert await texts(home.bot, "U2") == ["I like coffee."]


async def test_export_sends_their_memories_to_their_dm(home: Home) -> None:
    slack = home.slack
    await remember(home.bot, "U1", ["tea", "jazz"])
    await remember(home.bot, "U2", ["coffee"])
    view = await home.open("U1")
    after = await home.click("U1", view, "home-all", "home_export")
    (opened,) = slack.calls_to("conversations.open")
    assert opened.args["users"] == "U1"
    (sent,) = slack.files.values()
    assert sent.channel == slack.dms["U1"] and sent.name.endswith(".json")
    document = json.loads(sent.data or b"")
    assert document["schema"] == "membot-export/1"
    exported = json.dumps(document)
    assert "I like tea." in exported and "I like jazz." in exported
    assert "coffee" not in exported and "slack:T1:U2" not in exported
    assert "Sent" in json.dumps(after["blocks"])
    assert len(memory_sections(after)) == 2  # nothing was erased


async def test_each_person_sees_and_changes_only_their_own(home: Home) -> None:
    slack = home.slack
    await remember(home.bot, "U1", ["tea"])
    await remember(home.bot, "U2", ["coffee", "chess"])
    assert shown_texts(await home.open("U1")) == ["I like tea."]
    theirs = await home.open("U2")
    assert sorted(shown_texts(theirs)) == ["I like chess.", "I like coffee."]

    # U2 clicking Forget with the value of U1's button (a forged or replayed click):
    # the key is looked up among U2's own memories, so U1's memory stays.
    mine = slack.home_of("U1")
    forged = slack.view_action_payload("U2", mine, "memory-1-actions", "home_forget")
    before = home.publishes("U2")
    await home.deliver_action(forged)
    await home.published("U2", before + 1)
    assert await texts(home.bot, "U1") == ["I like tea."]
    assert len(await texts(home.bot, "U2")) == 2


async def test_views_stay_within_slacks_limits_and_text_is_escaped(home: Home) -> None:
    slack, bot = home.slack, home.bot
    await remember(bot, "U1", THINGS)
    await bot.remember("slack:T1:U1", "Tell <!channel> that <@U2> & co are great")
    # A memory far longer than Slack shows (one imported, say), stored as it is.
    (item, *_) = await bot.memories("slack:T1:U1")
    long_text = "Long " + "word " * 1_500
    namespace = memory_namespace("slack:T1:U1")
    await bot.store.aput(namespace, "fact-long", item.value | {"text": long_text})
    view = await home.open("U1")

    shown = "\n".join(b["text"]["text"] for b in memory_sections(view))
    assert "<!channel>" not in shown and "<@U2>" not in shown
    assert "Tell &lt;!channel&gt; that &lt;@U2&gt; &amp; co are great" in shown
    long_block = block_of(view, "Long word")
    (section,) = [b for b in view["blocks"] if b.get("block_id") == long_block]
    assert len(section["text"]["text"]) <= 3_000 and "…" in section["text"]["text"]

    await home.click("U1", view, "home-pages", "home_next")
    await home.deliver_action(
        slack.view_action_payload("U1", view, f"{long_block}-actions", "home_edit")
    )
    await slack.wait_for("views.open")
    modal = slack.views[-1]
    (field,) = [b for b in modal["blocks"] if b["type"] == "input"]
    assert field["element"]["initial_value"] == long_text[:3_000]
    (stored,) = [m for m in await bot.memories("slack:T1:U1", 1_000) if m.key == "fact-long"]
    assert stored.value["text"] == long_text  # cut for display only

    assert slack.view_errors == []
    for published in slack.views:
        assert len(published["blocks"]) <= 100
        for block in published["blocks"]:
            if block["type"] == "section":
                assert len(block["text"]["text"]) <= 3_000
            for element in [*block.get("elements", []), block.get("element") or {}]:
                assert len(element.get("value", "")) <= 2_000
                assert len(element.get("action_id", "")) <= 255
                assert len(element.get("initial_value", "")) <= 3_000


async def test_memories_command_splits_a_long_list(home: Home) -> None:
    slack, bot = home.slack, home.bot
    words = [f"topic{n:02d} " + "detail " * 40 for n in range(30)]
    for text in words:
        await bot.remember("slack:T1:U1", f"I like {text}")
    await home.deliver_command("/memories", user_id="U1")

    def listed() -> str:
        return "\n".join(r["text"] for r in slack.responses)

    await eventually(lambda: all(f"topic{n:02d}" in listed() for n in range(30)))
    assert len(slack.responses) > 1  # it did not fit in one message
    assert all(len(r["text"]) <= 3_900 for r in slack.responses)
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", listed(), re.M)]
    assert numbers == list(range(1, 31))


async def test_memories_command_stays_within_five_responses(home: Home) -> None:
    slack, bot = home.slack, home.bot
    for n in range(100):
        await bot.remember("slack:T1:U1", f"I like topic{n:03d} " + "detail " * 40)
    count = len(await bot.memories("slack:T1:U1", 1_000))
    await home.deliver_command("/memories", user_id="U1")
    responses = await slack.wait_for_responses(5)
    assert all(len(r["text"]) <= 3_900 for r in responses)
    listed = len(re.findall(r"^\d+\. ", "\n".join(r["text"] for r in responses[:4]), re.M))
    left = re.search(r"and (\d+) more", responses[4]["text"])
    assert left and listed + int(left[1]) == count and listed < count
    # A sentinel: another person's /memories, answered after; still no sixth response.
    await home.deliver_command("/memories", user_id="U2")
    await eventually(lambda: any("anything about you" in r["text"] for r in slack.responses))
    assert len(slack.responses) == 6 and "anything about you" in slack.responses[5]["text"]


async def test_a_failed_export_is_said_so(home: Home) -> None:
    await remember(home.bot, "U1", ["tea"])
    view = await home.open("U1")
    home.slack.fail("files.completeUploadExternal", error="not_in_channel")
    after = await home.click("U1", view, "home-all", "home_export")
    assert "couldn't send the export" in json.dumps(after["blocks"])
    assert all(f.channel is None for f in home.slack.files.values())


async def test_the_fake_refuses_views_slack_would_refuse(slack: FakeSlack) -> None:
    """The limits the Home tab keeps are checked by the fake as Slack checks them."""
    client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
    divider = {"type": "divider"}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_publish(user_id="U1", view={"type": "home", "blocks": [divider] * 101})
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3_001}}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_publish(user_id="U1", view={"type": "home", "blocks": [long_section]})
    button = {"type": "button", "text": {"type": "plain_text", "text": "b"}, "action_id": "a"}
    too_long = {"type": "actions", "elements": [button | {"value": "v" * 2_001}]}
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.views_publish(user_id="U1", view={"type": "home", "blocks": [too_long]})
    assert len(slack.view_errors) == 3 and slack.homes == {}
    with pytest.raises(SlackApiError, match="invalid_trigger_id"):
        await client.views_open(trigger_id="nope", view={"type": "modal", "blocks": []})
    fine = await client.views_publish(user_id="U1", view={"type": "home", "blocks": [divider]})
    assert slack.home_of("U1")["id"] == fine["view"]["id"]
