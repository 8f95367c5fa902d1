"""Markdown from a language model into Slack mrkdwn.

Models write CommonMark; Slack renders its own dialect (`*bold*`, `_italic_`,
`~strike~`, `<url|text>`), and treats `<...>` as control sequences. Escaping `&`, `<`
and `>` first means nothing a model writes can become a mention (`<!channel>`,
`<@U123>`) or a link Slack did not get from us, and a word joiner after the `@` of
`@here`, `@channel` and `@everyone` keeps those plain words too (invisible, and they no
longer match a broadcast). Code spans and blocks are left as they are, apart from that
escaping, which Slack also expects inside code.

Streamed answers go to Slack as Markdown (`markdown_text`, which Slack renders itself),
so they need only `escape`; but they arrive in pieces, and a broadcast word can be split
across two (`"@her"` + `"e"`): `held_back` says how much of the end of a text still
being written must wait for the next piece before it is escaped and sent.
"""

from __future__ import annotations

import re

_CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.S)
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.M)
_BULLET = re.compile(r"^(\s*)[-*+]\s+", re.M)


_BROADCAST_WORDS = ("here", "channel", "everyone")
_BROADCAST = re.compile(r"@(?=here|channel|everyone)", re.I)
_TRAILING_AT = re.compile(r"@([A-Za-z]{0,8})\Z")
WORD_JOINER = "\u2060"


def escape(text: str) -> str:
    """`text` safe to send: no control sequences, no broadcast words. Character by
    character (the broadcast words aside), so escaping a text piece by piece gives what
    escaping it whole gives, as long as `held_back` is respected."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BROADCAST.sub("@" + WORD_JOINER, text)


def held_back(text: str) -> int:
    """How many characters at the end of `text` (still being written) could be the start
    of a broadcast word (`@`, `@he`, `@chan`…): they are sent once the next piece shows
    what they become."""
    found = _TRAILING_AT.search(text)
    if found is None:
        return 0
    start = found[1].lower()
    if any(word.startswith(start) and len(start) < len(word) for word in _BROADCAST_WORDS):
        return len(found[0])
    return 0


def to_mrkdwn(markdown: str) -> str:
    pieces = _CODE.split(markdown)
    return "".join(
        escape(piece) if index % 2 else _inline(escape(piece)) for index, piece in enumerate(pieces)
    )


def _inline(text: str) -> str:
    text = _LINK.sub(lambda m: f"<{m[2]}|{m[1]}>", text)
    text = _HEADING.sub(lambda m: f"\x00{m[1]}\x00", text)
    text = _BULLET.sub(lambda m: f"{m[1]}• ", text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _BOLD.sub(lambda m: f"\x00{m[2]}\x00", text)
    text = _STRIKE.sub(r"~\1~", text)
    return text.replace("\x00", "*")
