"""A terminal chat on the same engine as Slack and Discord, for local use and demos.

Ids are namespaced like the platforms' (`console:<user>`, `console:<thread>`), so a
console user's memories never mix with a Slack or Discord user's.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

from langchain_core.messages import AIMessage

from engine.bot import MemoryBot

HELP = """Commands:
  /thread NAME   switch to (or start) conversation NAME
  /user NAME     talk as user NAME
  /memories      list what I remember about you
  /why           how my memories of you came to be (added, updated, merged, ...)
  /forget        erase what I remember about you
  /history       show this conversation so far
  /help          this text
  /quit          leave (Ctrl-D works too)"""


def user_id(name: str) -> str:
    return f"console:{name}"


def thread_id(name: str) -> str:
    return f"console:{name}"


@dataclass
class ConsoleSession:
    bot: MemoryBot
    user: str
    thread: str
    out: TextIO = sys.stdout

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    @property
    def prompt(self) -> str:
        return f"{self.user}@{self.thread}> "

    async def handle(self, line: str) -> bool:
        """One line of input; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        if line.startswith("/"):
            return await self._command(line)
        reply = await self.bot.chat(
            user_id=user_id(self.user), thread_id=thread_id(self.thread), text=line
        )
        self.say(f"bot: {reply.text}")
        return True

    async def _command(self, line: str) -> bool:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        handlers: dict[str, Callable[[str], Awaitable[None]]] = {
            "/thread": self._switch_thread,
            "/user": self._switch_user,
            "/memories": self._memories,
            "/why": self._why,
            "/forget": self._forget,
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
        items = await self.bot.memories(user_id(self.user))
        if not items:
            self.say("I don't remember anything about you yet.")
            return
        self.say(f"What I remember about {self.user}:")
        for number, item in enumerate(items, 1):
            self.say(f"  {number}. {item.value.get('text', item.value)}")

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

    async def _forget(self, _: str) -> None:
        erased = await self.bot.forget(user_id(self.user))
        self.say(f"Forgot {erased} memor{'y' if erased == 1 else 'ies'} about {self.user}.")

    async def _history(self, _: str) -> None:
        messages = await self.bot.history(thread_id(self.thread))
        if not messages:
            self.say(f"Thread {self.thread} is empty.")
        for message in messages:
            who = "bot" if isinstance(message, AIMessage) else "you"
            self.say(f"  {who}: {message.content}")

    async def _help(self, _: str) -> None:
        self.say(HELP)


async def run_console(
    bot: MemoryBot, *, user: str = "me", thread: str = "main", banner: str = ""
) -> None:
    session = ConsoleSession(bot=bot, user=user, thread=thread)
    if banner:
        session.say(banner)
    session.say("Type a message, or /help for commands.")
    while True:
        try:
            line = await asyncio.to_thread(input, session.prompt)
        except EOFError:
            session.say("")
            break
        if not await session.handle(line):
            break
    session.say("Bye.")
