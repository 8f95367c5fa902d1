"""The App Home tab: "What I remember about you", one page at a time.

On `app_home_opened` (the Home tab) the person's memories are published with
`views.publish`: each fact as a section (its text escaped, so no mention or link can come
from a memory, and cut for display when long; stored text is never changed here), its
kind and date, and Edit / Forget buttons; then Previous / Next, Export and Forget
everything (behind a Block Kit `confirm` dialog). Every click is acknowledged first (bolt's
`ack`), then the engine does its work, then the Home tab is published again.

Edit opens a modal (`views.open` with the click's `trigger_id`, which Slack honours for
3 seconds) holding a `plain_text_input` prefilled with the fact; its `view_submission`
stores the person's wording with `edit_memory`. Export sends the JSON document
(`export_memories`, schema "membot-export/1") as a file in the person's DM with the app
(`conversations.open`, then `files_upload_v2`: files.getUploadURLExternal, the upload,
files.completeUploadExternal).

Whose memories: always the clicker's, from the signed payload (`user.id` and the team);
a button's value only says which of *their* facts and which page, and the engine looks a
key up among that person's facts only.

Slack's limits kept here: at most 100 blocks in a view, 3,000 characters of section text,
2,000 of a button value, 255 of an action_id, 3,000 of a `plain_text_input`'s
initial_value and of a view's private_metadata, 150 of a header, 24 of a modal title.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack_format import escape
from engine.bot import MemoryBot

logger = logging.getLogger(__name__)

PAGE_SIZE = 10  # facts per page: 2 blocks each, well inside Slack's 100 per view
MAX_BLOCKS = 100
SECTION_LIMIT = 3_000
VALUE_LIMIT = 2_000
INPUT_LIMIT = 3_000  # a plain_text_input's initial_value and max_length
METADATA_LIMIT = 3_000
SHOWN_LIMIT = 2_800  # characters of one (escaped) memory shown in the Home tab
ELLIPSIS = "…"

EDIT = "home_edit"
FORGET = "home_forget"
PREVIOUS = "home_previous"
NEXT = "home_next"
EXPORT = "home_export"
FORGET_ALL = "home_forget_all"
EDIT_VIEW = "home_edit_memory"  # the edit modal's callback_id
EDIT_BLOCK, EDIT_INPUT = "memory", "text"
EXPORT_NAME = "membot-export.json"

_PARTIAL_ENTITY = re.compile(r"&[a-z]{0,4}\Z")


class SlackHome:
    """The Home tab's listeners; `key(team, user)` is the engine's user id."""

    def __init__(self, bot: MemoryBot, key: Callable[[str, str], str]) -> None:
        self.bot = bot
        self.key = key

    def register(self, app: AsyncApp) -> None:
        app.action(EDIT)(self._edit)
        app.action(FORGET)(self._forget_one)
        app.action(PREVIOUS)(self._page)
        app.action(NEXT)(self._page)
        app.action(EXPORT)(self._export)
        app.action(FORGET_ALL)(self._forget_all)
        app.view(EDIT_VIEW)(self._edit_submitted)

    # -- events and clicks -------------------------------------------------------------

    async def opened(self, event: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        """`app_home_opened`: also sent for the Messages tab, where there is nothing to do."""
        user, team = _s(event, "user"), _s(body, "team_id") or _s(event, "team")
        if event.get("tab") != "home" or not user or not team:
            return
        await self.publish(client, team, user)

    async def _page(self, ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        who, choice = _clicker(body), _choice(body)
        if who and choice is not None:
            await self.publish(client, *who, offset=choice["o"])

    async def _forget_one(self, ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        who, choice = _clicker(body), _choice(body)
        if not who or choice is None or not choice["k"]:
            return
        gone = await self.bot.forget_memory(self.key(*who), choice["k"])
        notice = "Forgotten." if gone else "That memory was already gone."
        await self.publish(client, *who, offset=choice["o"], notice=notice)

    async def _edit(self, ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        who, choice = _clicker(body), _choice(body)
        trigger = _s(body, "trigger_id")
        if not who or choice is None or not choice["k"] or not trigger:
            return
        text = await self._text_of(self.key(*who), choice["k"], choice["o"])
        if text is None:
            await self.publish(client, *who, offset=choice["o"], notice="That memory is gone.")
            return
        try:
            await client.views_open(trigger_id=trigger, view=edit_view(choice, text))
        except SlackApiError as err:  # e.g. expired_trigger_id: the click was too long ago
            logger.warning("slack: could not open the edit dialog (%s)", _error_of(err))

    async def _edit_submitted(
        self, ack: Any, body: dict[str, Any], view: dict[str, Any], client: Any
    ) -> None:
        who = _clicker(body)
        text = _submitted_text(view)
        if not text.strip():
            await ack(response_action="errors", errors={EDIT_BLOCK: "Write the memory, or Cancel."})
            return
        await ack()  # closes the modal; the work follows
        choice = _metadata(view)
        if not who or choice is None:
            return
        saved = await self.bot.edit_memory(self.key(*who), choice["k"], text)
        notice = "Saved." if saved is not None else "That memory is gone; nothing was saved."
        await self.publish(client, *who, offset=choice["o"], notice=notice)

    async def _forget_all(self, ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        who = _clicker(body)
        if not who:
            return
        erased = await self.bot.forget(self.key(*who))
        await self.publish(client, *who, notice=f"Done: erased {erased} of your memories.")

    async def _export(self, ack: Any, body: dict[str, Any], client: Any) -> None:
        await ack()
        who, choice = _clicker(body), _choice(body)
        if not who:
            return
        offset = choice["o"] if choice else 0
        document = await self.bot.export_memories(self.key(*who))
        content = json.dumps(document, ensure_ascii=False, indent=2)
        try:
            opened = await client.conversations_open(users=who[1])
            await client.files_upload_v2(
                channel=opened["channel"]["id"],
                content=content,
                filename=EXPORT_NAME,
                title="What membot remembers about you",
                initial_comment="Everything I hold about you, as JSON.",
            )
        except (SlackClientError, aiohttp.ClientError, TimeoutError) as err:  # upload too
            logger.warning("slack: could not send an export (%s)", type(err).__name__)
            notice = "Sorry, I couldn't send the export. Please try again later."
        else:
            notice = "Sent: the export is in our direct messages."
        await self.publish(client, *who, offset=offset, notice=notice)

    # -- the view ------------------------------------------------------------------------

    async def publish(
        self, client: AsyncWebClient, team: str, user: str, *, offset: int = 0, notice: str = ""
    ) -> None:
        """Publish the page at `offset` (the last page there is, if the list got shorter)."""
        person = self.key(team, user)
        offset = max(0, offset)
        items = await self.bot.memory_page(person, offset=offset, limit=PAGE_SIZE + 1)
        while not items and offset > 0:
            offset = max(0, offset - PAGE_SIZE)
            items = await self.bot.memory_page(person, offset=offset, limit=PAGE_SIZE + 1)
        view = home_view(items[:PAGE_SIZE], offset, more=len(items) > PAGE_SIZE, notice=notice)
        try:
            await client.views_publish(user_id=user, view=view)
        except SlackApiError as err:
            logger.warning("slack: could not publish the Home tab (%s)", _error_of(err))

    async def _text_of(self, person: str, key: str, offset: int) -> str | None:
        """The stored text of one of the person's facts (looked for on the page it was shown
        on, then among all of them, in case the list moved)."""
        page = await self.bot.memory_page(person, offset=max(0, offset), limit=PAGE_SIZE)
        for items in (page, await self.bot.memories(person, limit=10_000)):
            for item in items:
                if item.key == key:
                    return str(item.value.get("text", ""))
        return None


def home_view(items: list[Any], offset: int, *, more: bool, notice: str = "") -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "What I remember about you"}}
    ]
    if notice:
        blocks.append(_context(escape(notice)))
    if items:
        first, last = offset + 1, offset + len(items)
        blocks.append(_context(f"Newest first: {first}–{last}. Edit or forget any of them."))
    else:
        empty = "I don't remember anything about you yet." if offset == 0 else "No more memories."
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": empty}})
    blocks.append({"type": "divider"})
    for n, item in enumerate(items, offset + 1):
        blocks.extend(_memory_blocks(n, item, offset))
    nav = []
    if offset > 0:
        nav.append(_button("Previous", PREVIOUS, _value("", max(0, offset - PAGE_SIZE))))
    if more:
        nav.append(_button("Next", NEXT, _value("", offset + PAGE_SIZE)))
    if nav:
        blocks.append({"type": "actions", "block_id": "home-pages", "elements": nav})
    forget_all = _button("Forget everything", FORGET_ALL, _value("", 0), style="danger")
    forget_all["confirm"] = {
        "title": {"type": "plain_text", "text": "Forget everything?"},
        "text": {
            "type": "mrkdwn",
            "text": "I will erase everything I remember about you, and what you said to me. "
            "This cannot be undone.",
        },
        "confirm": {"type": "plain_text", "text": "Erase it all"},
        "deny": {"type": "plain_text", "text": "Cancel"},
        "style": "danger",
    }
    export = _button("Export", EXPORT, _value("", offset))
    blocks.append({"type": "actions", "block_id": "home-all", "elements": [export, forget_all]})
    return {"type": "home", "blocks": blocks[:MAX_BLOCKS]}


def edit_view(choice: dict[str, Any], text: str) -> dict[str, Any]:
    """The edit modal: the fact prefilled (cut to what a plain_text_input takes)."""
    initial = text if len(text) <= INPUT_LIMIT else text[:INPUT_LIMIT]
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": EDIT_BLOCK,
            "label": {"type": "plain_text", "text": "What I should remember"},
            "element": {
                "type": "plain_text_input",
                "action_id": EDIT_INPUT,
                "multiline": True,
                "max_length": INPUT_LIMIT,
                "initial_value": initial,
            },
        }
    ]
    if initial != text:
        note = f"This memory is longer than {INPUT_LIMIT:,} characters: only its beginning"
        blocks.append(_context(note + " is shown, and saving keeps only what is here."))
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "title": {"type": "plain_text", "text": "Edit memory"},
        "submit": {"type": "plain_text", "text": "Save"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": _value(choice["k"], choice["o"]),
        "blocks": blocks,
    }


def shown(text: str) -> str:
    """A memory as the Home tab shows it: escaped, and cut (whole entities only) when long."""
    safe = escape(text)
    if len(safe) <= SHOWN_LIMIT:
        return safe
    return _PARTIAL_ENTITY.sub("", safe[: SHOWN_LIMIT - 1]) + ELLIPSIS


def _memory_blocks(n: int, item: Any, offset: int) -> list[dict[str, Any]]:
    value = item.value if isinstance(item.value, dict) else {}
    details = [str(value.get("kind") or "fact")]
    if date := str(value.get("updated_at") or value.get("created_at") or "")[:10]:
        details.append(f"saved {escape(date)}")
    text = f"{shown(str(value.get('text', '')))}\n_{escape(' · '.join(details))}_"
    section = {
        "type": "section",
        "block_id": f"memory-{n}",
        "text": {"type": "mrkdwn", "text": text},
    }
    choice = _value(item.key, offset)
    if len(choice) > VALUE_LIMIT:  # not a key the engine makes; shown, not editable here
        return [section]
    buttons = [_button("Edit", EDIT, choice), _button("Forget", FORGET, choice)]
    return [section, {"type": "actions", "block_id": f"memory-{n}-actions", "elements": buttons}]


def _button(text: str, action_id: str, value: str, *, style: str = "") -> dict[str, Any]:
    button = {"type": "button", "text": {"type": "plain_text", "text": text}}
    button |= {"action_id": action_id, "value": value}
    return button | ({"style": style} if style else {})


def _context(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn[:SECTION_LIMIT]}]}


def _value(key: str, offset: int) -> str:
    return json.dumps({"k": key, "o": offset}, separators=(",", ":"), ensure_ascii=False)


def _parse(raw: Any) -> dict[str, Any] | None:
    """A button value or modal metadata of ours: `{"k": key, "o": offset}`, else None."""
    try:
        choice = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(choice, dict) or not isinstance(choice.get("k"), str):
        return None
    offset = choice.get("o")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        return None
    return {"k": choice["k"], "o": offset}


def _choice(body: dict[str, Any]) -> dict[str, Any] | None:
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions or not isinstance(actions[0], dict):
        return None
    return _parse(actions[0].get("value"))


def _metadata(view: dict[str, Any]) -> dict[str, Any] | None:
    choice = _parse(view.get("private_metadata") if isinstance(view, dict) else None)
    return choice if choice and choice["k"] else None


def _submitted_text(view: Any) -> str:
    try:
        value = view["state"]["values"][EDIT_BLOCK][EDIT_INPUT]["value"]
    except (TypeError, KeyError):
        return ""
    return value if isinstance(value, str) else ""


def _clicker(body: dict[str, Any]) -> tuple[str, str] | None:
    """(team, user) of whoever clicked or submitted, from the signed payload."""
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    team = _s(body.get("team"), "id") or _s(user, "team_id")
    person = _s(user, "id")
    return (team, person) if team and person else None


def _s(mapping: Any, key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, str) else ""


def _error_of(err: SlackApiError) -> str:
    return str(err.response.get("error") or err.response.status_code)
