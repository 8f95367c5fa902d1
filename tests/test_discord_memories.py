"""`/memories` (paged, with Delete and Edit) and `/export`, end to end: the real discord.py
client against the fake Discord, the real engine (offline model) behind it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest

from bots import discord_memories
from bots.discord_memories import EXPIRED, NOT_YOURS
from tests.fakes.discord import ADMIN_ID, CHANNEL_ID, EPHEMERAL, GUILD_ID, MEMBER_ID
from tests.fakes.llm import FakeLLM
from tests.fakes.waits import eventually
from tests.llm_settings import fake_llm_options
from tests.test_discord import (
    Running,
    assert_no_pings,
    is_extraction,
    learning_model,
    running,
)

ME = f"discord:{GUILD_ID}:{MEMBER_ID}"
ADMIN = f"discord:{GUILD_ID}:{ADMIN_ID}"
CALLBACK = "/interactions/{id}/{token}/callback"


@pytest.fixture
async def run(tmp_path, local_embeddings):
    async with running(tmp_path, local_embeddings) as run:
        for n in range(12):
            await run.bot.remember(ME, f"my hobby number {n} is collecting stamps")
        yield run


def hobbies(content: str) -> set[int]:
    return {n for n in range(12) if f"hobby number {n} is" in content}


def components(message: dict) -> dict[str, dict]:
    """The message's components by custom_id."""
    return {c["custom_id"]: c for row in message.get("components") or [] for c in row["components"]}


async def acknowledged_first(run: Running, event: dict, kind: int) -> dict:
    """The interaction's callback, checked to be its first call and of type `kind`."""
    await run.callback(event)
    first = run.about(event)[0]
    assert first.path.startswith(f"/interactions/{event['id']}/"), first.path
    assert first.json["type"] == kind, first.json
    return first.json


async def listed(run: Running, user: int = MEMBER_ID) -> dict:
    """`/memories`: its follow-up, as the fake holds the message now."""
    event = await run.command("memories", user=user)
    await acknowledged_first(run, event, 5)
    body = await run.answer(event)
    assert body["flags"] == EPHEMERAL
    assert_no_pings(body)
    message = run.fake.sent[-1]
    assert message["content"] == body["content"]
    return message


async def update(run: Running, event: dict, kind: int = 6) -> dict:
    """A component (or modal) interaction: acknowledged first, then the list's message
    edited through it; that edit's body."""
    await acknowledged_first(run, event, kind)
    (edit,) = await run.answers(event)
    assert_no_pings(edit)
    return edit


async def pick(run: Running, message: dict, position: int, user: int = MEMBER_ID) -> dict:
    event = run.fake.component_interaction(
        "memories:pick",
        user=user,
        channel_id=CHANNEL_ID,
        message=message,
        component_type=3,
        values=[str(position)],
    )
    await run.fake.dispatch("INTERACTION_CREATE", event)
    return event


def line_of(content: str, number: int) -> str:
    return next(line for line in content.splitlines() if line.startswith(f"{number}. "))


async def test_pages_of_ten_with_previous_and_next(run: Running) -> None:
    message = await listed(run)
    first = hobbies(message["content"])
    assert len(first) == 10 and "10. " in message["content"] and "11. " not in message["content"]
    assert "(20" in line_of(message["content"], 1)  # dated: (YYYY-MM-DD)
    parts = components(message)
    assert len(parts["memories:pick"]["options"]) == 10
    assert parts["memories:prev"]["disabled"] and not parts["memories:next"]["disabled"]
    assert parts["memories:edit"]["disabled"] and parts["memories:delete"]["disabled"]

    nxt = await run.click("memories:next", user=MEMBER_ID, message=message)
    await update(run, nxt)
    shown = run.fake.messages[int(message["id"])]
    second = hobbies(shown["content"])
    assert len(second) == 2 and not first & second
    assert "11. " in shown["content"] and "12. " in shown["content"]
    assert "1. " not in shown["content"].replace("11. ", "").replace("12. ", "")
    assert len(components(shown)["memories:pick"]["options"]) == 2
    assert components(shown)["memories:next"]["disabled"]

    back = await run.click("memories:prev", user=MEMBER_ID, message=shown)
    await update(run, back)
    assert hobbies(run.fake.messages[int(message["id"])]["content"]) == first


async def test_delete_removes_exactly_the_picked_memory(run: Running) -> None:
    message = await listed(run)
    before = {i.key: i.value["text"] for i in await run.bot.memories(ME)}
    picked = await pick(run, message, 2)
    await update(run, picked)
    shown = run.fake.messages[int(message["id"])]
    (chosen,) = [o for o in components(shown)["memories:pick"]["options"] if o.get("default")]
    assert chosen["value"] == "2" and chosen["label"].startswith("3. ")
    assert not components(shown)["memories:delete"]["disabled"]
    text = line_of(shown["content"], 3)[3:].rsplit(" (", 1)[0]

    delete = await run.click("memories:delete", user=MEMBER_ID, message=shown)
    await update(run, delete)
    after = {i.key: i.value["text"] for i in await run.bot.memories(ME)}
    assert len(after) == 11 and text not in after.values()
    assert {k: v for k, v in before.items() if v != text} == after
    shown = run.fake.messages[int(message["id"])]
    assert shown["content"].startswith(f"Deleted: {text}")
    page = shown["content"].split("\n\n")[1]
    assert text not in page and len(hobbies(page)) == 10  # the next one moved up
    assert components(shown)["memories:delete"]["disabled"]  # nothing picked any more


async def test_edit_opens_a_prefilled_modal_and_applies_it(run: Running) -> None:
    message = await listed(run)
    await update(run, await pick(run, message, 0))
    shown = run.fake.messages[int(message["id"])]
    text = line_of(shown["content"], 1)[3:].rsplit(" (", 1)[0]
    (key,) = [i.key for i in await run.bot.memories(ME) if i.value["text"] == text]

    edit = await run.click("memories:edit", user=MEMBER_ID, message=shown)
    modal = (await acknowledged_first(run, edit, 9))["data"]
    (label,) = modal["components"]
    assert label["type"] == 18 and label["component"]["type"] == 4
    assert label["component"]["value"] == text and label["component"]["max_length"] <= 4000
    assert len(modal["title"]) <= 45 and len(modal["custom_id"]) <= 100
    assert run.fake.modals[int(edit["id"])] == modal

    submit = run.fake.modal_submit(edit, {"memories:text": "I collect old maps"})
    await run.fake.dispatch("INTERACTION_CREATE", submit)
    await update(run, submit)
    memories = {i.key: i.value["text"] for i in await run.bot.memories(ME)}
    assert memories[key] == "I collect old maps" and len(memories) == 12
    shown = run.fake.messages[int(message["id"])]
    assert shown["content"].startswith("Changed to: I collect old maps")
    assert "I collect old maps" in shown["content"].split("\n\n", 1)[1]


async def test_only_the_invoker_can_use_the_list(run: Running) -> None:
    message = await listed(run)
    await update(run, await pick(run, message, 0))
    shown = run.fake.messages[int(message["id"])]
    content = shown["content"]
    strangers = [
        await run.click("memories:delete", user=ADMIN_ID, message=shown),
        await run.click("memories:next", user=ADMIN_ID, message=shown),
        await pick(run, shown, 4, user=ADMIN_ID),
        await run.click("memories:edit", user=ADMIN_ID, message=shown),
    ]
    for event in strangers:
        refusal = await acknowledged_first(run, event, 4)
        assert refusal["data"]["content"] == NOT_YOURS
        assert refusal["data"]["flags"] == EPHEMERAL
    # A sentinel: the owner's own press is answered after the strangers' were handled.
    await update(run, await run.click("memories:next", user=MEMBER_ID, message=shown))
    for event in strangers:
        assert len(run.about(event)) == 1  # the refusal, and nothing else
    assert len(await run.bot.memories(ME)) == 12
    assert content != run.fake.messages[int(message["id"])]["content"]  # the owner's page 2
    assert int(strangers[-1]["id"]) not in run.fake.modals


async def test_components_stay_within_discord_limits(tmp_path, local_embeddings) -> None:
    async with running(tmp_path, local_embeddings) as run:
        long = "I like " + "very " * 780 + "long walks"  # ~3,900 characters
        await run.bot.remember(ME, long)
        for n in range(10):
            await run.bot.remember(ME, f"fact {n}: " + "word " * 150)
        message = await listed(run)
        assert len(message["content"]) <= 2000
        for custom_id, part in components(message).items():
            assert len(custom_id) <= 100 and len(part.get("label") or "") <= 80
        options = components(message)["memories:pick"]["options"]
        assert len(options) <= 25
        for option in options:
            assert len(option["label"]) <= 100 and len(option.get("description", "")) <= 100
            assert len(option["value"]) <= 100
        await update(run, await run.click("memories:next", user=MEMBER_ID, message=message))
        shown = run.fake.messages[int(message["id"])]
        assert len(shown["content"]) <= 2000
        await update(run, await pick(run, shown, 0))
        edit = await run.click("memories:edit", user=MEMBER_ID, message=shown)
        (label,) = (await acknowledged_first(run, edit, 9))["data"]["components"]
        assert len(label["component"].get("value") or "") <= 4000


async def test_an_expired_list_says_so(tmp_path, local_embeddings, monkeypatch) -> None:
    monkeypatch.setattr(discord_memories, "TIMEOUT", 0.2)
    async with running(tmp_path, local_embeddings) as run:
        await run.bot.remember(ME, "I like tea")
        message = await listed(run)

        def expired() -> dict | None:
            shown = run.fake.messages[int(message["id"])]
            return shown if EXPIRED in shown["content"] else None

        shown = await eventually(expired, what="the list marked expired")
        assert not shown["components"] and "1. I like tea" in shown["content"]


async def test_export_is_an_ephemeral_json_attachment(run: Running) -> None:
    await run.bot.remember(ADMIN, "I am the admin and I like chess")
    event = await run.command("export", user=MEMBER_ID)
    assert (await acknowledged_first(run, event, 5))["data"] == {"flags": EPHEMERAL}
    await run.answer(event)
    message = run.fake.sent[-1]
    assert message["flags"] == EPHEMERAL
    (attachment,) = message["attachments"]
    assert attachment["filename"] == "membot-export.json"
    files = run.fake.uploaded(message)
    document = json.loads(files["membot-export.json"])
    assert attachment["size"] == len(files["membot-export.json"])
    assert document["schema"] == "membot-export/1" and document["user_id"] == ME
    texts = [m["value"]["text"] for m in document["memories"]]
    assert len(texts) == 12 and hobbies(" ".join(texts)) == set(range(12))
    assert "chess" not in files["membot-export.json"].decode()


async def test_nothing_to_list(run: Running) -> None:
    message = await listed(run, user=ADMIN_ID)
    assert message["content"] == "I don't remember anything about you yet."
    assert not message["components"]


async def test_every_interaction_is_acknowledged_before_the_engine_is_asked(
    tmp_path, local_embeddings
) -> None:
    """Each engine call here waits for learning in progress; the learning is held until
    the test lets it go, so an acknowledgement that arrives while it is held came first
    (one made after the engine call would never arrive, and the wait fail)."""
    async with FakeLLM(learning_model) as llm:
        options = fake_llm_options(llm) | {"memory_debounce_seconds": 0.0}
        async with running(tmp_path, local_embeddings, **options) as run:
            for n in range(12):
                await run.bot.remember(ME, f"my hobby number {n} is collecting stamps")

            async def while_learning(act: Callable[[], Awaitable[dict]], kind: int) -> dict:
                """`act()` while bob's learning is held: acknowledged (`kind`) and nothing
                else until the learning is let go; then its answer's body."""
                held = llm.hold(is_extraction)
                await run.say(MEMBER_ID, "I like jazz", mentions_bot=True)
                await held.arrived()
                event = await act()
                await acknowledged_first(run, event, kind)
                assert len(run.about(event)) == 1  # the answer waits for the learning
                held.release()
                (answer,) = await run.answers(event)
                return answer

            async def memories() -> dict:
                return await run.command("memories", user=MEMBER_ID)

            listing = await while_learning(memories, 5)
            assert "1. I like jazz" in listing["content"]  # after the learning it waited for
            message = run.fake.sent[-1]

            async def next_page() -> dict:
                return await run.click("memories:next", user=MEMBER_ID, message=message)

            await while_learning(next_page, 6)
            await update(run, await pick(run, message, 0))

            async def delete() -> dict:
                return await run.click("memories:delete", user=MEMBER_ID, message=message)

            deleted = await while_learning(delete, 6)
            assert deleted["content"].startswith("Deleted: ")
            await update(run, await pick(run, message, 0))
            edit = await run.click("memories:edit", user=MEMBER_ID, message=message)
            await acknowledged_first(run, edit, 9)

            async def submit() -> dict:
                event = run.fake.modal_submit(edit, {"memories:text": "I collect old maps"})
                await run.fake.dispatch("INTERACTION_CREATE", event)
                return event

            edited = await while_learning(submit, 6)
            assert edited["content"].startswith("Changed to: I collect old maps")

            async def export() -> dict:
                return await run.command("export", user=MEMBER_ID)

            await while_learning(export, 5)
            document = json.loads(run.fake.uploaded(run.fake.sent[-1])["membot-export.json"])
            texts = {m["value"]["text"] for m in document["memories"]}
            assert "I collect old maps" in texts and "I like jazz" in texts
