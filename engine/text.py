"""Making arbitrary incoming text safe to store and send on, without losing it."""

from __future__ import annotations

import unicodedata


def clean_text(text: str) -> str:
    """Valid UTF-8 (lone surrogates become U+FFFD), no NULs or other C0 controls
    except tab/newline, NFC-normalised. Zero-width and RTL characters stay: they
    are legitimate in many scripts."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = "".join(ch for ch in text if ch in "\t\n" or unicodedata.category(ch) != "Cc")
    return unicodedata.normalize("NFC", text)
