"""Settings that point membot's real vendor SDKs at the local fake model server.

One place for what every test (and bench) that talks to `tests.fakes.llm.FakeLLM` sets:
the provider, a dummy key, the fake's base URLs, and the local embeddings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.settings import Settings
from tests.fakes.llm import FakeLLM


def fake_llm_options(fake: FakeLLM, provider: str = "anthropic") -> dict[str, Any]:
    """The settings' fields, for tests that build `Settings` through a harness of their
    own (the Discord and Slack `running` helpers take them as keyword arguments)."""
    return {
        "llm_provider": provider,
        "embedding_provider": "local",
        "anthropic_api_key": "test-key",
        "anthropic_base_url": fake.anthropic_url,
        "openai_api_key": "test-key",
        "openai_base_url": fake.openai_url,
    }


def fake_llm_settings(
    fake: FakeLLM, data_dir: Path, provider: str = "anthropic", **extra: Any
) -> Settings:
    return Settings(data_dir=data_dir, **fake_llm_options(fake, provider), **extra)
