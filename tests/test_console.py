"""The README's run command, driven like a person would: through a pseudo-terminal.

`make run` starts `membot run`; with no platform credentials it explains how to
configure Slack/Discord and opens the console chat. The seed scenario is played
through it, the process is restarted, and the conversation and memory are still there.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parents[1]
PROMPT = r"\S+@\S+> "


def spawn(
    command: str, args: list[str], data_dir: Path, settings: dict[str, str] | None = None
) -> pexpect.spawn:
    """`command` in a pseudo-terminal, with none of the caller's membot or vendor settings
    (the offline model, unless `settings` say otherwise) and its data in `data_dir`. Output
    is buffered as in a person's terminal (no PYTHONUNBUFFERED), so what is not flushed
    does not show."""
    env = {
        **{
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("MEMBOT_", "SLACK_", "DISCORD_", "ANTHROPIC_", "OPENAI_"))
            and key != "PYTHONUNBUFFERED"
        },
        "MEMBOT_DATA_DIR": str(data_dir),
        **(settings or {}),
    }
    child = pexpect.spawn(
        command, args, cwd=str(ROOT), env=env, encoding="utf-8", timeout=120, echo=False
    )
    child.logfile_read = sys.stdout  # visible with pytest -s when something goes wrong
    return child


def exit_status(child: pexpect.spawn) -> int | None:
    """Wait for `child` to end (the terminal closes within `timeout`, or it fails); its
    exit status. `wait`, not `close`: close hangs up on a child still on its way out."""
    child.expect(pexpect.EOF)
    return child.wait()


def say(child: pexpect.spawn, line: str, expect: str) -> str:
    child.sendline(line)
    child.expect(expect)
    text = child.before + child.after
    child.expect(PROMPT)
    return text


def test_make_run_plays_the_seed_scenario_and_survives_a_restart(tmp_path: Path) -> None:
    child = spawn("make", ["-s", "run"], tmp_path)
    child.expect("No Slack or Discord credentials are configured")
    child.expect("OFFLINE|offline")
    child.expect(PROMPT)
    say(child, "/user 1", "Now talking as 1")
    say(child, "/thread 1", "Now in thread 1")
    say(child, "Hi! Remember: my name is Bob", r"bot: \[offline\]")
    say(child, "/thread 2", "Now in thread 2")
    say(child, "what is my name?", "Your name is Bob")
    say(child, "/user 2", "Now talking as 2")
    say(child, "/thread 3", "Now in thread 3")
    answer = say(child, "what is my name?", r"bot: [^\r\n]+\r\n")  # the whole line
    assert "Bob" not in answer
    say(child, "/nonsense", "Unknown command /nonsense")
    child.sendline("/quit")
    child.expect("Bye.")
    assert exit_status(child) == 0

    child = spawn("make", ["-s", "run"], tmp_path)
    child.expect(PROMPT)
    say(child, "/user 1", "Now talking as 1")
    say(child, "/thread 1", r"Now in thread 1 \(2 earlier messages\)")
    say(child, "/history", r"you: Hi! Remember: my name is Bob\s+bot: \[offline\]")
    say(child, "/memories", "1. My name is Bob.")
    say(child, "/thread 4", "Now in thread 4")
    say(child, "what is my name?", "Your name is Bob")
    say(child, "/forget", "Forgot 1 memory about 1")
    say(child, "/memories", "I don't remember anything about you yet")
    child.sendeof()
    child.expect("Bye.")
    assert exit_status(child) == 0


def test_membot_chat_takes_user_and_thread(tmp_path: Path) -> None:
    membot = str(Path(sys.executable).with_name("membot"))
    child = spawn(membot, ["chat", "--user", "alice", "--thread", "t1"], tmp_path)
    child.expect(re.escape("alice@t1> "))
    say(child, "I like green tea", r"bot: \[offline\]")
    say(child, "/memories", "1. I like green tea.")
    say(child, "/why", re.escape("added 'I like green tea.' (by rules in console:t1)"))
    say(child, "/help", "/forget")
    child.sendline("/quit")
    assert exit_status(child) == 0
