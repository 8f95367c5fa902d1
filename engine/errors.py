"""Errors the operator fixes in the configuration, not bugs in membot.

A wrong setting found deep inside start-up (the store, the embedder, a platform login)
used to surface as a traceback of dozens of lines, and in a container as a restart loop
nobody could read. Code that can tell *which* setting is wrong raises `ConfigError`
instead; the `membot` command prints its one line and exits with status 2. It lives in
`engine/` because engine code raises it and `engine/` never imports `bots/`.
"""

from __future__ import annotations


class ConfigError(Exception):
    """A setting to change: `variable` names it, the message says what is wrong and the fix.

    The message is meant to be printed as is, on one line, with no traceback: write it
    for the operator ("MEMBOT_X=... is ...; set it to ..."), not for a developer.
    """

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable

    @property
    def line(self) -> str:
        """The message on one line, whatever a nested error text brought in with it."""
        return " ".join(str(self).split())


def find_config_error(error: BaseException) -> ConfigError | None:
    """The `ConfigError` behind `error`: itself, one inside an exception group (a
    `TaskGroup` wraps a failing adapter in one), or the cause it was raised from."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConfigError):
            return current
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        if current.__cause__ is not None:
            pending.append(current.__cause__)
    return None
