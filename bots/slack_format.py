"""Markdown from a language model into Slack mrkdwn.

Models write CommonMark; Slack renders its own dialect (`*bold*`, `_italic_`,
`~strike~`, `<url|text>`), and treats `<...>` as control sequences. Escaping `&`, `<`
and `>` first means nothing a model writes can become a mention (`<!channel>`,
`<@U123>`) or a link Slack did not get from us. Code spans and blocks are left as they
are, apart from that escaping, which Slack also expects inside code.
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


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
