"""The console as a person types into it, in a pseudo-terminal, against the real bot (the
offline model, or the real vendor SDK talking to the local fake model): answers appear as
the model writes them, Ctrl-C stops an answer and the bot goes on, Ctrl-C or Ctrl-D at the
prompt leaves at once with status 0 and the terminal as it was, a line longer than the
terminal's canonical-mode limit (4,095 characters) reaches the bot whole, and up-arrow
brings back earlier lines, this session's and those kept in the data directory.

No test waits for time to pass: where order matters the fake model is paced so slowly
that the rest of an answer cannot come during the test (20 s a word, 40 words).
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from bots.console import HISTORY_FILE, HISTORY_LENGTH, STOPPED
from engine.memory.manager import MEMORY_TOOL
from tests.fakes.llm import FakeLLM, ToolUse, echo_reply
from tests.test_console import PROMPT, exit_status, spawn

MEMBOT = str(Path(sys.executable).with_name("membot"))
ANSWER = " ".join(f"word{n:02d}" for n in range(1, 41))  # the model's 40-word answer
CRAWL = 0.05  # pieces per second: 20 s a word, so an answer takes 13 minutes
UP = "\x1b[A"  # what the up-arrow key sends


def answer_or_echo(body: dict[str, Any]) -> str | ToolUse:
    """ANSWER to a chat message that asks for a story, else its echo; memory extraction
    gets a proper empty tool call (no fallback warnings in the output)."""
    if body.get("tools"):
        return ToolUse(MEMORY_TOOL.name, {"operations": []})
    reply = echo_reply(body)
    return ANSWER if "story" in reply else reply


@pytest.fixture
def fake() -> Iterator[FakeLLM]:
    with FakeLLM(reply=answer_or_echo) as server:
        yield server


def chat(fake: FakeLLM, data_dir: Path, **settings: str) -> pexpect.spawn:
    """`membot chat` on the real Anthropic SDK pointed at `fake`, at its prompt. The
    answer deadlines are far off so a slowly paced answer is never cut short."""
    env = {
        "MEMBOT_LLM_PROVIDER": "anthropic",
        "ANTHROPIC_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": fake.anthropic_url,
        "MEMBOT_EMBEDDING_PROVIDER": "local",
        "MEMBOT_ANSWER_TIMEOUT_SECONDS": "3600",
        "MEMBOT_LLM_TIMEOUT_SECONDS": "600",
        **settings,
    }
    child = spawn(MEMBOT, ["chat"], data_dir, env)
    child.expect(PROMPT)
    return child


def answer(child: pexpect.spawn, line: str) -> str:
    """Send `line`; all the console printed after "bot: " until the next prompt."""
    child.sendline(line)
    child.expect("bot: ")
    child.expect(PROMPT)
    return child.before


def test_the_printed_answer_is_the_model_s_output(fake: FakeLLM, tmp_path: Path) -> None:
    fake.first_token_delay, fake.tokens_per_second = 0.3, 20
    child = chat(fake, tmp_path)
    assert answer(child, "tell me a story") == f"{ANSWER}\r\n"
    assert fake.streamed == [ANSWER]
    child.sendeof()
    assert exit_status(child) == 0


def test_the_first_words_show_while_the_model_is_still_writing(
    fake: FakeLLM, tmp_path: Path
) -> None:
    fake.first_token_delay, fake.tokens_per_second = 0.3, CRAWL
    child = chat(fake, tmp_path)
    child.sendline("tell me a story")
    child.expect("bot: word01")
    # The model has not finished (it records an answer once all of it is sent), so the
    # console printed these words as they came, not the answer once it was complete.
    assert fake.streamed == []
    assert "word40" not in child.before + child.after
    child.close(force=True)


def test_ctrl_c_stops_the_answer_and_the_bot_goes_on(fake: FakeLLM, tmp_path: Path) -> None:
    fake.tokens_per_second = CRAWL
    child = chat(fake, tmp_path)
    child.sendline("tell me a story")
    child.expect("bot: word01")
    child.sendintr()
    child.expect(re.escape(STOPPED))
    child.expect(PROMPT)
    # The next question, in the same thread, is answered: the stopped turn let go of it.
    fake.tokens_per_second = None
    assert answer(child, "tell me a story again") == f"{ANSWER}\r\n"
    # The stopped answer was never finished, so it is not in the conversation.
    child.sendline("/history")
    child.expect(PROMPT)
    assert child.before.endswith(f"you: tell me a story again\r\n  bot: {ANSWER}\r\n")
    assert child.before.count("you:") == 1
    child.sendline("/quit")
    assert exit_status(child) == 0


@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-d"])
def test_leaving_at_the_prompt_is_immediate_with_status_0(tmp_path: Path, key: str) -> None:
    # In bash, which prints the terminal's settings before and after and the exit status
    # (bash waits out a Ctrl-C its child handled instead of dying of it).
    script = f'stty -g; {shlex.quote(MEMBOT)} chat; echo "status=$?"; stty -g'
    child = spawn("bash", ["-c", script], tmp_path)
    child.expect(r"(\S+)\r\n")
    before = child.match.group(1)
    child.expect(PROMPT)
    if key == "ctrl-c":
        child.send("half a line, never sent")  # Ctrl-C drops it
        child.sendintr()
    else:
        child.sendeof()
    child.expect(r"Bye\.\r\n")
    assert "bot:" not in child.before
    child.expect(r"status=(\d+)\r\n")
    assert child.match.group(1) == "0"
    child.expect(r"(\S+)\r\n")
    assert child.match.group(1) == before  # echo and line mode back as they were
    assert exit_status(child) == 0


def test_a_line_over_the_terminal_s_line_limit_reaches_the_bot_whole(
    fake: FakeLLM, tmp_path: Path
) -> None:
    child = chat(fake, tmp_path, MEMBOT_MAX_MESSAGE_CHARS="6000")
    line = " ".join(f"w{n:04d}" for n in range(1, 834)) + " ok"  # 5,000 characters
    assert len(line) == 5000
    assert answer(child, line) == f"echo: {line}\r\n"  # the fake echoes what it was sent
    # Over the bot's own limit the engine refuses, and counts all of it: nothing was cut.
    refusal = answer(child, "x" * 7000)
    assert refusal.startswith("That message is 7,000 characters long; I can read up to 6,000.")
    child.sendline("/quit")
    assert exit_status(child) == 0


def test_up_arrow_brings_back_earlier_lines_and_the_history_is_kept(
    fake: FakeLLM, tmp_path: Path
) -> None:
    history = tmp_path / HISTORY_FILE
    history.write_text("".join(f"old line {n}\n" for n in range(1, 1501)))
    child = chat(fake, tmp_path)
    assert answer(child, "green tea") == "echo: green tea\r\n"
    assert answer(child, UP) == "echo: green tea\r\n"  # this session's last line
    # Two up: past "green tea" (entered twice, kept once) to an earlier session's last line.
    assert answer(child, UP * 2) == "echo: old line 1500\r\n"
    child.sendline("/quit")
    assert exit_status(child) == 0
    kept = history.read_text().splitlines()
    assert len(kept) == HISTORY_LENGTH  # the oldest lines went
    assert kept[-4:] == ["old line 1500", "green tea", "old line 1500", "/quit"]
