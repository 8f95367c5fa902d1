"""Settings that point membot's real vendor SDKs at the local fake model server.

One place for what every test (and bench) that talks to `tests.fakes.llm.FakeLLM` sets:
the provider, a dummy key, the fake's base URLs, and the local embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.settings import Settings
from tests.fakes.llm import FakeLLM


def fake_llm_settings(
    fake: FakeLLM, data_dir: Path, provider: str = "anthropic", **extra: Any
) -> Settings:
    return Settings(
        data_dir=data_dir,
        llm_provider=provider,
        embedding_provider="local",
        anthropic_api_key="test-key",
        anthropic_base_url=fake.anthropic_url,
        openai_api_key="test-key",
        openai_base_url=fake.openai_url,
        **extra,
    )
