"""The server-mode store: the Qdrant team's `AsyncQdrantStore` plus hybrid search.

Same plans, same payload layout as `EdgeStore`; the mixin turns scored searches into the
hybrid query (`engine.store.hybrid`), and `setup` creates the collection with the BM25
sparse vector (or, on a collection made before, adds the full-text index it ranks on).
`check_server` is the start-up probe: a wrong `MEMBOT_QDRANT_URL` or API key is one
`ConfigError` within seconds instead of a long traceback after the client's retries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from langgraph.store.qdrant import AsyncQdrantStore
from qdrant_client import AsyncQdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from engine.errors import ConfigError
from engine.store.hybrid import (
    LEXICAL_VECTOR,
    HybridSearchMixin,
    hybrid_config,
    keyword_indexes,
    sparse_vectors_config,
    text_index,
    text_path,
)

# Long enough for a server across a region, short enough that a typo in the URL is
# reported while the operator still watches the terminal (qdrant-client's own timeout
# is per request and applies to every later call, so the probe has its own client).
STARTUP_TIMEOUT_SECONDS = 5


class HybridQdrantStore(HybridSearchMixin, AsyncQdrantStore):
    async def setup(self, **collection_options: Any) -> None:
        config = hybrid_config(self.index_config)
        if config is not None:
            collection_options.setdefault("sparse_vectors_config", sparse_vectors_config())
        await super().setup(**collection_options)
        if config is None:
            return
        # Idempotent on the server: re-creating an identical index is a no-op.
        for path, schema in keyword_indexes(config).items():
            await self.client.create_payload_index(self.collection_name, path, schema, wait=True)
        info = await self.client.get_collection(self.collection_name)
        if LEXICAL_VECTOR in (info.config.params.sparse_vectors or {}):
            self.lexical = "sparse"
            return
        # A collection made before sparse BM25 vectors: words are ranked on a full-text
        # index.
        self.lexical = "text"
        await self.client.create_payload_index(
            self.collection_name, text_path(config), text_index(), wait=True
        )


async def check_server(
    url: str, api_key: str | None, *, wait_seconds: int = STARTUP_TIMEOUT_SECONDS
) -> None:
    """Ask the server at `url` for its version once; raise `ConfigError` naming the
    setting to fix if it cannot be reached or refuses the key."""
    if url == ":memory:":  # qdrant-client's in-process mode (tests): nothing to reach
        return
    shown = redact_url(url)
    try:
        client = AsyncQdrantClient(
            location=url, api_key=api_key, timeout=wait_seconds, check_compatibility=False
        )
    except ValueError as err:
        raise ConfigError(
            "MEMBOT_QDRANT_URL",
            f"MEMBOT_QDRANT_URL={shown} is not a Qdrant URL ({err}). Use e.g. "
            "http://qdrant:6333, or unset it to keep memories in MEMBOT_DATA_DIR.",
        ) from err
    try:
        await client.info()
    except UnexpectedResponse as err:
        if err.status_code in (401, 403):
            raise ConfigError(
                "MEMBOT_QDRANT_API_KEY",
                f"the Qdrant server at {shown} refused the API key (HTTP {err.status_code}). "
                "Set MEMBOT_QDRANT_API_KEY to the server's key"
                + (" (it is not set)." if api_key is None else "."),
            ) from err
        raise ConfigError(
            "MEMBOT_QDRANT_URL",
            f"MEMBOT_QDRANT_URL={shown} answered HTTP {err.status_code} "
            f"{err.reason_phrase}, not like a Qdrant server. Point it at Qdrant's REST "
            "port (6333 by default).",
        ) from err
    except (ResponseHandlingException, httpx.HTTPError, OSError, TimeoutError) as err:
        reason = _reason(err)
        raise ConfigError(
            "MEMBOT_QDRANT_URL",
            f"cannot reach the Qdrant server at MEMBOT_QDRANT_URL={shown} ({reason}). "
            "Start the server or fix MEMBOT_QDRANT_URL; unset it to keep memories in "
            "MEMBOT_DATA_DIR instead.",
        ) from err
    finally:
        await client.close()


def redact_url(url: str) -> str:
    """`url` without a user or password in it, fit for a message or a log."""
    parts = urlsplit(url)
    if not (parts.username or parts.password) or parts.hostname is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=host))


def _reason(error: BaseException) -> str:
    """The innermost useful text of a connection error (qdrant-client wraps httpx's)."""
    source = getattr(error, "source", None) or error.__cause__ or error
    return str(source) or type(source).__name__
