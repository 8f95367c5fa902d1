"""Shared fixtures. The local sentence model is loaded once per test session.

Postgres comes from `MEMBOT_TEST_POSTGRES_URL` (default: the server `.ci/postgres`
provides). Tests that need it never skip: without a server they fail and say how to get
one. `pg_url` gives each test a schema of its own, so reruns never see old rows.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import settings

from engine.checkpoint import describe_dsn
from engine.embeddings.local import LocalEmbeddings

# No example database: every run (CI's clean clone, a developer's checkout) explores anew
# instead of replaying what an earlier run happened to save in .hypothesis/. No deadline:
# it fails an example that takes over 200 ms, a timing assertion a busy machine breaks.
settings.register_profile("membot", database=None, deadline=None)
settings.load_profile("membot")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Check the profile reached every Hypothesis test: a test's own `@settings` inherits
    from the profile loaded when it is made, or passes a `database` or `deadline` of its
    own. (Those that build `@settings` inside the test body, the adapter fuzzers, set both
    to None in theirs.)"""
    for item in items:
        test = getattr(item, "obj", None)
        if not getattr(test, "is_hypothesis_test", False):
            continue
        used = getattr(test, "_hypothesis_internal_use_settings", None) or settings.default
        if used.database is not None:
            raise pytest.UsageError(
                f"{item.nodeid} would use a Hypothesis example database ({used.database!r})"
            )
        if used.deadline is not None:
            raise pytest.UsageError(f"{item.nodeid} has a Hypothesis deadline ({used.deadline})")


@pytest.fixture(scope="session")
def local_embeddings() -> tuple[LocalEmbeddings, int]:
    embeddings = LocalEmbeddings()
    embeddings.embed_query("warm up")  # load the weights now, not inside a timed path
    return embeddings, embeddings.dims


POSTGRES_URL = os.environ.get(
    "MEMBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=5).close()
    except psycopg.Error as err:
        pytest.fail(
            f"PostgreSQL is not reachable at {describe_dsn(POSTGRES_URL)} ({err}). "
            "Run .ci/postgres or set MEMBOT_TEST_POSTGRES_URL.",
            pytrace=False,
        )
    return POSTGRES_URL


@pytest.fixture
async def pg_url(postgres_url: str) -> AsyncIterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"membot_test_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    parts = urlsplit(postgres_url)
    query = "&".join(
        q for q in (parts.query, urlencode({"options": f"-csearch_path={schema}"})) if q
    )
    try:
        yield urlunsplit(parts._replace(query=query))
    finally:
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
