"""One person across platforms: a one-time code links a Slack and a Discord account, their
memories become one (recalled from either side, duplicates kept once, the newest value
winning), and unlinking parts them by where each thing was said. Through `MemoryBot` on
the default offline path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.bot import LINK_PENDING, MemoryBot
from engine.identity import CODE_LENGTH, MAX_FAILURES, normalised
from engine.settings import Settings

SLACK, DISCORD, CONSOLE = "slack:T1:U1", "discord:42:7", "console:ann"
SLACK_THREAD, DISCORD_THREAD = "slack:T1:C1:100.1", "discord:42:900"
DONT_KNOW = "I don't know"


def offline(data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, llm_provider="offline")


@pytest.fixture
async def bot(tmp_path: Path, local_embeddings) -> AsyncIterator[MemoryBot]:
    async with MemoryBot.open(offline(tmp_path), embeddings=local_embeddings) as opened:
        yield opened


async def say(bot: MemoryBot, user: str, thread: str, text: str) -> str:
    reply = await bot.chat(user_id=user, thread_id=thread, text=text)
    await bot.flush_memories()
    return reply.text


async def facts(bot: MemoryBot, user: str) -> set[str]:
    return {m.value["text"] for m in await bot.memories(user)}


async def link(bot: MemoryBot, issuer: str, typer: str) -> str:
    code = await bot.link_code(issuer)
    result = await bot.link(typer, code.code)
    assert result.ok, result.message
    return result.message


async def test_a_code_is_fifty_bits_shown_readably_and_forgiving_to_type(bot) -> None:
    code = await bot.link_code(SLACK)
    assert len(normalised(code.code)) == CODE_LENGTH and code.code[5] == "-"
    assert timedelta(minutes=9) < code.expires_at - datetime.now(UTC) <= timedelta(minutes=10)
    typed = f"  {code.code.lower().replace('-', ' ')} "  # lower case, a space for the dash
    assert (await bot.link(DISCORD, typed)).ok
    codes = {(await bot.link_code(CONSOLE)).code for _ in range(20)}
    assert len(codes) == 20


async def test_after_linking_a_fact_told_on_slack_is_recalled_on_discord(bot) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
    await say(bot, DISCORD, DISCORD_THREAD, "my dog is called Rex")
    before = await say(bot, DISCORD, "discord:42:901", "where do I live?")
    assert "Lisbon" not in before and DONT_KNOW in before

    message = await link(bot, SLACK, DISCORD)
    assert "Linked" in message and "2 things" in message, message

    assert await facts(bot, SLACK) == await facts(bot, DISCORD) == {
        "I live in Lisbon.",
        "My dog is Rex.",
    }
    assert "Lisbon" in await say(bot, DISCORD, "discord:42:902", "where do I live?")
    assert "Rex" in await say(bot, SLACK, "slack:T1:C1:100.2", "what's my dog called?")
    # Told after linking, on either side: known on the other at once.
    await say(bot, DISCORD, "discord:42:903", "I work as a nurse")
    assert "nurse" in await say(bot, SLACK, "slack:T1:C1:100.3", "what do I do for a living?")
    assert sorted(await bot.linked_accounts(SLACK)) == sorted([SLACK, DISCORD])
    document = await bot.export_memories(DISCORD)
    assert sorted(document["accounts"]) == sorted([SLACK, DISCORD])
    assert document["user_id"] == DISCORD


async def test_a_fact_held_on_both_sides_is_kept_once_and_the_newest_value_wins(bot) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I'm a vegetarian")
    await say(bot, SLACK, "slack:T1:C1:100.4", "I live in Lisbon")
    await say(bot, DISCORD, DISCORD_THREAD, "I'm a vegetarian")
    await say(bot, DISCORD, "discord:42:904", "we moved, I live in Porto now")  # said later

    message = await link(bot, DISCORD, SLACK)
    assert "kept once" in message

    assert await facts(bot, SLACK) == {"I'm a vegetarian.", "I live in Porto."}
    for side, thread in ((SLACK, "slack:T1:C1:100.5"), (DISCORD, "discord:42:905")):
        reply = await say(bot, side, thread, "where do I live?")
        assert "Porto" in reply and "Lisbon" not in reply, reply
    merged = [h for h in await bot.memory_history(SLACK) if h["action"] == "merged"]
    assert {(h["old"], h["new"], h["by"]) for h in merged} == {
        ("I'm a vegetarian.", None, "link"),
        ("I live in Lisbon.", "I live in Porto.", "link"),
    }
    (stale,) = [h for h in merged if h["old"] == "I live in Lisbon."]
    assert stale["valid_until"]  # the old value's valid time ended, kept in the history


async def test_after_unlinking_new_facts_stay_on_their_side(bot) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
    await say(bot, DISCORD, DISCORD_THREAD, "my dog is called Rex")
    await link(bot, SLACK, DISCORD)
    await say(bot, DISCORD, "discord:42:906", "my favourite colour is green")

    result = await bot.unlink(SLACK)
    assert result.ok and "keeps the 1 thing" in result.message, result.message
    # Each account keeps what was said on it.
    assert await facts(bot, SLACK) == {"I live in Lisbon."}
    assert await facts(bot, DISCORD) == {"My dog is Rex.", "My favorite colour is green."}

    await say(bot, SLACK, "slack:T1:C1:100.7", "I work as a teacher")
    await say(bot, DISCORD, "discord:42:907", "I play the cello")
    assert "teacher" not in await say(bot, DISCORD, "discord:42:908", "what's my job?")
    assert "cello" not in await say(bot, SLACK, "slack:T1:C1:100.8", "what instrument do I play?")
    assert "Rex" not in await say(bot, SLACK, "slack:T1:C1:100.9", "what's my dog called?")
    assert await bot.linked_accounts(SLACK) == [SLACK]
    assert not (await bot.unlink(SLACK)).ok  # nothing to unlink any more


@pytest.mark.parametrize("case", ["wrong", "expired", "reused", "own", "same workspace"])
async def test_a_bad_code_links_nothing(bot, case: str) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
    typer = DISCORD
    if case == "wrong":
        code = "ABCDE-FGHJK"
    elif case == "expired":
        issued = await bot.identities.issue(SLACK, now=datetime.now(UTC) - timedelta(minutes=11))
        code = issued.code
    elif case == "reused":
        code = (await bot.link_code(SLACK)).code
        assert (await bot.link(CONSOLE, code)).ok
        await bot.unlink(CONSOLE)
    elif case == "own":
        code, typer = (await bot.link_code(SLACK)).code, SLACK
    else:
        code, typer = (await bot.link_code(SLACK)).code, "slack:T1:U2"
    result = await bot.link(typer, code)
    assert not result.ok
    expected = {
        "wrong": "isn't valid",
        "expired": "expired",
        "reused": "isn't valid",
        "own": "own",
        "same workspace": "same workspace",
    }[case]
    assert expected in result.message, result.message
    assert await bot.linked_accounts(typer) == [typer]
    if typer != SLACK:
        assert "Lisbon" not in await say(bot, typer, f"{typer}:x", "where do I live?")


async def test_wrong_codes_are_rate_limited_and_a_new_code_replaces_the_old(bot) -> None:
    first = (await bot.link_code(SLACK)).code
    second = (await bot.link_code(SLACK)).code
    assert "isn't valid" in (await bot.link(DISCORD, first)).message  # replaced
    for n in range(MAX_FAILURES - 1):
        assert not (await bot.link(DISCORD, f"ZZZZZ-ZZZZ{n}")).ok
    locked = await bot.link(DISCORD, second)  # right, but after 5 wrong ones
    assert not locked.ok and "Too many" in locked.message
    assert await bot.linked_accounts(DISCORD) == [DISCORD]
    assert (await bot.link(CONSOLE, second)).ok  # the limit is per account typing


async def test_link_unlink_and_admin_erasure_are_audited_and_an_admin_stays_in_tenancy(
    bot,
) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
    await say(bot, DISCORD, DISCORD_THREAD, "my dog is called Rex")
    await link(bot, SLACK, DISCORD)
    with pytest.raises(PermissionError):
        await bot.erase_member(SLACK, actor="slack:T2:UADMIN", platform="slack")
    assert await facts(bot, SLACK) == {"I live in Lisbon.", "My dog is Rex."}

    erased = await bot.erase_member(SLACK, actor="slack:T1:UADMIN", platform="slack")
    # Only what was said in the admin's workspace is erased; Discord keeps the rest.
    assert erased == 1
    assert await facts(bot, SLACK) == set()
    assert await facts(bot, DISCORD) == {"My dog is Rex."}
    assert await bot.linked_accounts(DISCORD) == [DISCORD]
    link_entry, unlink_entry, erase_entry = bot.audit.entries()
    assert (link_entry["action"], link_entry["actor"], link_entry["target"]) == (
        "link",
        DISCORD,
        SLACK,
    )
    assert (unlink_entry["action"], unlink_entry["actor"]) == ("unlink", "slack:T1:UADMIN")
    assert (erase_entry["action"], erase_entry["target"], erase_entry["count"]) == (
        "forget_memories",
        SLACK,
        1,
    )


async def test_forgetting_a_linked_person_erases_both_sides_and_keeps_the_link(bot) -> None:
    await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
    await say(bot, DISCORD, DISCORD_THREAD, "my dog is called Rex")
    await link(bot, SLACK, DISCORD)
    assert await bot.forget(DISCORD) == 2
    assert await facts(bot, SLACK) == set() and await bot.episodes(SLACK) == []
    assert sorted(await bot.linked_accounts(SLACK)) == sorted([SLACK, DISCORD])


async def test_a_link_cut_short_by_a_crash_is_finished_at_the_next_start(
    tmp_path: Path, local_embeddings
) -> None:
    async with MemoryBot.open(offline(tmp_path), embeddings=local_embeddings) as bot:
        await say(bot, SLACK, SLACK_THREAD, "I live in Lisbon")
        await say(bot, DISCORD, DISCORD_THREAD, "my dog is called Rex")
        # What a crash right after the link was noted leaves: neither the accounts joined
        # nor the memories moved.
        change = {"op": "merge", "accounts": [SLACK, DISCORD], "sources": [SLACK, DISCORD]}
        await bot.store.aput(LINK_PENDING, "person:cut-short", change, index=False)
    async with MemoryBot.open(offline(tmp_path), embeddings=local_embeddings) as bot:
        assert await facts(bot, SLACK) == {"I live in Lisbon.", "My dog is Rex."}
        assert sorted(await bot.linked_accounts(DISCORD)) == sorted([SLACK, DISCORD])
        assert await bot.store.asearch(LINK_PENDING) == []
        # And an unlink cut short the same way: noted, the account still linked.
        change = {"op": "split", "account": SLACK, "others": [DISCORD]}
        await bot.store.aput(LINK_PENDING, "person:cut-short", change, index=False)
    async with MemoryBot.open(offline(tmp_path), embeddings=local_embeddings) as bot:
        assert await bot.linked_accounts(SLACK) == [SLACK]
        assert await facts(bot, SLACK) == {"I live in Lisbon."}
        assert await facts(bot, DISCORD) == {"My dog is Rex."}
