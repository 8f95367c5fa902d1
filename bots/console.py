"""A terminal chat on the same engine as Slack and Discord, for local use and demos.

Ids are namespaced like the platforms' (`console:<user>`, `console:<thread>`), so a
console user's memories never mix with a Slack or Discord user's.

Answers are printed as the model writes them. Lines are read with the standard library's
`readline` (editing; up-arrow history, kept in the data directory) in a thread of their
own, so the bot's background work (learning, scheduled jobs) goes on while the prompt
waits. Ctrl-C means "stop what you are doing": at the prompt it leaves, like Ctrl-D;
while an answer is being written it stops that answer and the prompt comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from langchain_core.messages import AIMessage
from langgraph.store.base import Item

from engine.bot import MemoryBot

try:
    import termios
except ImportError:  # not on Windows; there is no terminal mode to put back there
    termios = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

HISTORY_FILE = "console_history"  # in the data directory
HISTORY_LENGTH = 1000  # lines kept in it
STOPPED = "(stopped)"  # shown when Ctrl-C stops an answer
MEMORY_PAGE = 50  # memories read per store query while listing them all

HELP = """Commands:
  /thread NAME   switch to (or start) conversation NAME
  /user NAME     talk as user NAME
  /memories      list what I remember about you, numbered, newest first
  /forget N      erase memory N of the last /memories list
  /edit N TEXT   correct memory N of the last /memories list to TEXT
  /export PATH   write everything I hold about you to PATH, as JSON
  /link [CODE]   a code to link another account; with CODE, link to the account it came from
  /unlink        separate this account from the accounts linked to it
  /why           how my memories of you came to be (added, updated, merged, ...)
  /forget        erase everything I remember about you
  /history       show this conversation so far
  /help          this text
  /quit          leave (Ctrl-D or Ctrl-C work too)
Ctrl-C while I am answering stops the answer."""


def user_id(name: str) -> str:
    return f"console:{name}"


def thread_id(name: str) -> str:
    return f"console:{name}"


def _ignore() -> None:
    """What Ctrl-C does while a command runs: nothing. Commands are short store reads and
    `/forget`, which must not stop half way."""


class Interrupted(Exception):
    """Ctrl-C at the prompt: the user wants to leave."""


@dataclass
class Listing:
    """The memories `/memories` showed last, by number: `/forget N` and `/edit N` act on
    what the person saw, so numbers stay put until the next `/memories` even when a new
    fact is learnt (or one is erased) in between."""

    user: str
    keys: list[str]
    texts: list[str]

    def key(self, number: int) -> str | None:
        """The key shown as `number` (1-based), or None if no such line was shown."""
        return self.keys[number - 1] if 1 <= number <= len(self.keys) else None


def _day(stamp: object) -> str:
    """An ISO time as a short date ("27 Nov"; the year too when it is not this one): the
    list shows how recent a memory is, not the exact time."""
    try:
        when = datetime.fromisoformat(str(stamp))
    except ValueError:
        return ""
    day = f"{when.day} {when:%b}"
    return day if when.year == datetime.now(UTC).year else f"{day} {when.year}"


def _describe(item: Item) -> str:
    """A memory's line in `/memories`: its text, then its kind and date."""
    value = item.value
    details = ", ".join(
        part for part in (str(value.get("kind", "fact")), _day(value.get("updated_at"))) if part
    )
    return f"{value.get('text', value)} ({details})"


def _write_private(where: str, text: str) -> Path:
    """Write `text` to the file `where` (~ expanded), readable by its owner only when
    created (0600): an export holds everything a person told the bot, like the console
    history. Returns the path written, to show."""
    path = Path(where).expanduser()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    return path


@dataclass
class ConsoleSession:
    bot: MemoryBot
    user: str
    thread: str
    out: TextIO = sys.stdout
    # What Ctrl-C does now; `on_ctrl_c` sets it for as long as something can be stopped.
    ctrl_c: Callable[[], object] = field(default=_ignore, repr=False)
    # What the last `/memories` showed, for `/forget N` and `/edit N`.
    listing: Listing | None = field(default=None, repr=False)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def write(self, text: str) -> None:
        """Part of a line, shown at once: an answer is read as it is written."""
        self.out.write(text)
        self.out.flush()

    @property
    def prompt(self) -> str:
        return f"{self.user}@{self.thread}> "

    def interrupt(self) -> None:
        """Ctrl-C was pressed (called on the event loop, never inside other code)."""
        self.ctrl_c()

    @contextlib.contextmanager
    def on_ctrl_c(self, action: Callable[[], object]) -> Iterator[None]:
        """Ctrl-C does `action` inside the block, and what it did before afterwards."""
        before, self.ctrl_c = self.ctrl_c, action
        try:
            yield
        finally:
            self.ctrl_c = before

    async def handle(self, line: str) -> bool:
        """One line of input; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return await self._command(line)
        await self._answer(line)
        return True

    async def _answer(self, line: str) -> None:
        """Answer `line` as it is written. Ctrl-C cancels the writing task, which closes
        the stream: the engine cancels the turn and frees the thread, and we are back at
        the prompt. Cancelling this task (SIGTERM) cancels the writing task with it."""
        writing = asyncio.create_task(self._write_answer(line))
        with self.on_ctrl_c(writing.cancel):
            try:
                await writing
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the console itself is being stopped, not just this answer
                self.say("")
                self.say(STOPPED)

    async def _write_answer(self, line: str) -> None:
        self.write("bot: ")
        shown: list[str] = []
        stream = self.bot.stream(
            user_id=user_id(self.user), thread_id=thread_id(self.thread), text=line
        )
        async with stream:
            async for piece in stream:
                self.write(piece)
                shown.append(piece)
        self._end_answer("".join(shown), stream.reply.text)

    def _end_answer(self, shown: str, text: str) -> None:
        """End the answer's line. The reply is what was shown, unless nothing was (a
        refusal or an apology comes whole) or the turn failed midway: then its notice
        replaces the partial text, so it goes on a line of its own."""
        if text == shown:
            self.say("")
        elif not shown:
            self.say(text)
        else:
            self.say("")
            self.say(text)

    async def _command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "/thread": self._switch_thread,
            "/user": self._switch_user,
            "/memories": self._memories,
            "/why": self._why,
            "/forget": self._forget,
            "/edit": self._edit,
            "/export": self._export,
            "/link": self._link,
            "/unlink": self._unlink,
            "/history": self._history,
            "/help": self._help,
        }
        if name in ("/quit", "/exit"):
            return False
        handler = handlers.get(name.lower())
        if handler is None:
            self.say(f"Unknown command {name}. Type /help for the list.")
        else:
            await handler(arg)
        return True

    async def _switch_thread(self, arg: str) -> None:
        if not arg:
            self.say(f"You are in thread {self.thread}. Usage: /thread NAME")
            return
        self.thread = arg
        history = await self.bot.history(thread_id(arg))
        self.say(f"Now in thread {arg} ({len(history)} earlier messages).")

    async def _switch_user(self, arg: str) -> None:
        if not arg:
            self.say(f"You are {self.user}. Usage: /user NAME")
            return
        self.user = arg
        self.say(f"Now talking as {arg}.")

    async def _memories(self, _: str) -> None:
        items = await self._all_memories()
        self.listing = Listing(
            self.user,
            [item.key for item in items],
            [str(item.value.get("text", "")) for item in items],
        )
        if not items:
            self.say("I don't remember anything about you yet.")
            return
        self.say(f"What I remember about {self.user}:")
        for number, item in enumerate(items, 1):
            self.say(f"  {number}. {_describe(item)}")

    async def _all_memories(self) -> list[Item]:
        """All the user's facts, newest first. A terminal has no size limit, so all are
        shown, but read a page at a time so no single store query is unbounded."""
        items: list[Item] = []
        seen: set[str] = set()
        while True:
            page = await self.bot.memory_page(
                user_id(self.user), offset=len(items), limit=MEMORY_PAGE
            )
            # A fact learnt meanwhile shifts the pages: never list one twice.
            items.extend(item for item in page if item.key not in seen)
            seen.update(item.key for item in page)
            if len(page) < MEMORY_PAGE:
                return items

    def _listed(self, arg: str, usage: str) -> tuple[int, str] | None:
        """The number in `arg` and the key it was shown for, or None after saying why
        not: no list shown yet (or shown for another user), not a number, out of range."""
        listing = self.listing if self.listing and self.listing.user == self.user else None
        if listing is None:
            self.say("Show the list first with /memories, then use its numbers.")
            return None
        if not (arg.isascii() and arg.isdigit()):
            self.say(f"Usage: {usage} (N is a number from the last /memories list).")
            return None
        number = int(arg)
        key = listing.key(number)
        if key is None:
            count = len(listing.keys)
            shown = {0: "none: the list was empty", 1: "just 1"}.get(count, f"1 to {count}")
            self.say(f"There is no memory {number} in the last list (numbers: {shown}).")
            return None
        return number, key

    async def _why(self, _: str) -> None:
        entries = await self.bot.memory_history(user_id(self.user))
        if not entries:
            self.say("No memory changes recorded for you.")
        for entry in entries:
            change = {
                "added": f"added {entry['new']!r}",
                "updated": f"changed {entry['old']!r} to {entry['new']!r}",
                "deleted": f"deleted {entry['old']!r}",
                "merged": f"merged {entry['old']!r}"
                + (f" into {entry['new']!r}" if entry["new"] else ""),
            }[entry["action"]]
            source = f" in {entry['thread']}" if entry["thread"] else ""
            self.say(f"  {entry['at'][:16]} {change} (by {entry['by']}{source})")

    async def _forget(self, arg: str) -> None:
        """`/forget N` erases one memory of the last list; `/forget` alone, everything."""
        if arg:
            await self._forget_one(arg)
            return
        erased = await self.bot.forget(user_id(self.user))
        self.listing = None  # its numbers point at nothing now
        self.say(f"Forgot {erased} memor{'y' if erased == 1 else 'ies'} about {self.user}.")

    async def _forget_one(self, arg: str) -> None:
        listed = self._listed(arg, "/forget N")
        if listed is None:
            return
        number, key = listed
        if not await self.bot.forget_memory(user_id(self.user), key):
            self.say(f"Memory {number} is already gone.")
            return
        assert self.listing is not None  # `_listed` found it
        self.say(f"Forgot memory {number}: {self.listing.texts[number - 1]}")

    async def _edit(self, arg: str) -> None:
        """`/edit N TEXT`: the person's own correction, stored as they wrote it."""
        number_arg, _, text = arg.partition(" ")
        listed = self._listed(number_arg, "/edit N TEXT")
        if listed is None:
            return
        number, key = listed
        if not text.strip():
            self.say("Usage: /edit N TEXT (the corrected memory, as it should read).")
            return
        item = await self.bot.edit_memory(user_id(self.user), key, text)
        if item is None:
            self.say(f"Memory {number} is gone; /memories shows what is left.")
            return
        assert self.listing is not None  # `_listed` found it
        self.listing.texts[number - 1] = str(item.value.get("text", text))
        self.say(f"Memory {number} now reads: {self.listing.texts[number - 1]}")

    async def _export(self, arg: str) -> None:
        """`/export PATH`: everything held about the user, as JSON. The write runs in a
        thread so the bot's background work goes on while a slow disk is written."""
        if not arg:
            self.say("Usage: /export PATH (a file to write, e.g. ~/membot-export.json)")
            return
        document = await self.bot.export_memories(user_id(self.user))
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        try:
            path = await asyncio.to_thread(_write_private, arg, text)
        except OSError as err:
            self.say(f"Could not write {err.filename or arg}: {err.strerror or err}")
            return
        count = len(document.get("memories", []))
        self.say(f"Exported {count} memor{'y' if count == 1 else 'ies'} to {path}.")

    async def _link(self, arg: str) -> None:
        me = user_id(self.user)
        if arg:
            self.say((await self.bot.link(me, arg)).message)
            return
        code = await self.bot.link_code(me)
        self.say(
            f"Your link code: {code.code} (works once, for 10 minutes). Type /link {code.code} "
            "on your other account to be one person on both."
        )

    async def _unlink(self, _: str) -> None:
        self.say((await self.bot.unlink(user_id(self.user))).message)

    async def _history(self, _: str) -> None:
        messages = await self.bot.history(thread_id(self.thread))
        if not messages:
            self.say(f"Thread {self.thread} is empty.")
        for message in messages:
            who = "bot" if isinstance(message, AIMessage) else "you"
            self.say(f"  {who}: {message.content}")

    async def _help(self, _: str) -> None:
        self.say(HELP)


class History:
    """Readline's history, kept in a file so up-arrow reaches lines of earlier sessions.
    Each line is appended as it is entered (a crash loses nothing) and the file is cut to
    the last `HISTORY_LENGTH` lines as it is written. Private (0600): lines are what
    people told the bot."""

    def __init__(self, readline: ModuleType, path: Path) -> None:
        self._readline = readline
        self._path = path
        self._length = readline.get_current_history_length()

    @classmethod
    def load(cls, path: Path) -> History | None:
        """The history in `path`, or None without readline or when the file is unusable
        (then typing still works, with no history kept)."""
        try:
            import readline
        except ImportError:
            return None
        readline.set_history_length(HISTORY_LENGTH)
        try:
            path.touch(mode=0o600, exist_ok=True)
            readline.read_history_file(path)
        except OSError as err:
            logger.warning("console history %s is unusable (%s); not kept", path, err)
            return None
        return cls(readline, path)

    def save_new(self) -> None:
        """Append the line `input()` just added. It adds none for an empty line or the
        same line again, so the history's length tells."""
        length = self._readline.get_current_history_length()
        try:
            if length > self._length:
                self._readline.append_history_file(length - self._length, self._path)
        except OSError as err:
            logger.warning("could not save console history (%s)", err)
        self._length = length


def _terminal_mode(stream: TextIO) -> list[Any] | None:
    """The terminal's settings, to put back if a line is abandoned; None if not a tty."""
    if termios is None:
        return None
    try:
        return termios.tcgetattr(stream.fileno())
    except (OSError, ValueError, termios.error):  # not a terminal, or no file descriptor
        return None


class LineReader:
    """Reads typed lines with `input()` (so readline, when present) in a daemon thread.

    Why a thread of its own and not `asyncio.to_thread`: a line being typed cannot be taken
    back from `input()`, so leaving at the prompt (Ctrl-C, SIGTERM) abandons the thread
    where it waits. An executor's thread would then be waited for at exit, i.e. until the
    next Enter; a daemon thread is not. Readline left the terminal unechoed and in
    non-canonical mode for the abandoned line, so the saved settings are put back.

    Why readline (beyond editing and history): it reads the terminal in non-canonical
    mode, so a line is not cut at the kernel's canonical-mode limit of 4,095 characters.

    After an abandoned line, `input()` is still waiting in that thread (and holds the
    interpreter's readline lock), so a reader is not read from again after that.
    """

    def __init__(self, history: History | None = None, stdin: TextIO = sys.stdin) -> None:
        self._history = history
        self._terminal = _terminal_mode(stdin)
        self._stdin = stdin
        self._pending: asyncio.Future[str] | None = None

    @classmethod
    def for_console(cls, history_file: Path) -> LineReader:
        """A reader of stdin, with a history in `history_file` when stdin is a terminal
        (scripted input has no use for one)."""
        interactive = _terminal_mode(sys.stdin) is not None
        return cls(History.load(history_file) if interactive else None)

    async def read(self, prompt: str) -> str:
        """The next line. Raises EOFError at Ctrl-D (or the end of the input) and
        `Interrupted` when `interrupt()` is called while it waits."""
        loop = asyncio.get_running_loop()
        self._pending = pending = loop.create_future()
        returned = threading.Event()
        threading.Thread(
            target=self._input,
            args=(loop, pending, prompt, returned),
            name="console-input",
            daemon=True,
        ).start()
        try:
            line = await pending
        finally:
            self._pending = None
            if not returned.is_set():
                self._abandon()
        if self._history is not None:
            self._history.save_new()
        return line

    def interrupt(self) -> None:
        """Stop waiting for the line being typed: `read` raises `Interrupted`."""
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(Interrupted())

    def _input(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: asyncio.Future[str],
        prompt: str,
        returned: threading.Event,
    ) -> None:
        """In the reading thread: `input()`, its outcome handed to the loop."""
        try:
            outcome: str | Exception = input(prompt)
        except Exception as err:  # EOFError at Ctrl-D; anything else is raised by `read`
            outcome = err
        returned.set()
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            loop.call_soon_threadsafe(_settle, pending, outcome)

    def _abandon(self) -> None:
        """Give the terminal back as it was before readline took it for this line."""
        if self._terminal is None or termios is None:
            return
        with contextlib.suppress(OSError, ValueError, termios.error):
            termios.tcsetattr(self._stdin.fileno(), termios.TCSADRAIN, self._terminal)


def _settle(pending: asyncio.Future[str], outcome: str | Exception) -> None:
    if pending.done():  # given up on already (Ctrl-C, cancelled)
        return
    if isinstance(outcome, Exception):
        pending.set_exception(outcome)
    else:
        pending.set_result(outcome)


@contextlib.contextmanager
def ctrl_c_calls(action: Callable[[], object]) -> Iterator[None]:
    """Inside the block Ctrl-C calls `action` on the event loop instead of raising
    KeyboardInterrupt into whatever runs. Afterwards the handler from before is back
    (asyncio.run's, which cancels the main task). Without signals on the loop (Windows,
    not the main thread) Ctrl-C keeps its usual meaning."""
    loop = asyncio.get_running_loop()
    before = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, action)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if before is not None:
            signal.signal(signal.SIGINT, before)


async def run_console(
    bot: MemoryBot, *, user: str = "me", thread: str = "main", banner: str = ""
) -> None:
    session = ConsoleSession(bot=bot, user=user, thread=thread)
    reader = LineReader.for_console(bot.settings.data_dir / HISTORY_FILE)
    if banner:
        session.say(banner)
    session.say("Type a message, or /help for commands.")
    with ctrl_c_calls(session.interrupt):
        await converse(session, reader)
    session.say("Bye.")


async def converse(session: ConsoleSession, reader: LineReader) -> None:
    """Read and handle lines until /quit, Ctrl-D or Ctrl-C at the prompt."""
    while True:
        try:
            with session.on_ctrl_c(reader.interrupt):
                line = await reader.read(session.prompt)
        except (EOFError, Interrupted):
            session.say("")  # the prompt's line is left unfinished
            return
        if not await session.handle(line):
            return
