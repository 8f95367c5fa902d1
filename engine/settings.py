"""All configuration in one place, read from `MEMBOT_*` environment variables (and `.env`).

Provider keys also accept their vendors' own variable names (`ANTHROPIC_API_KEY`,
`OPENAI_API_KEY`) because that is what operators already have exported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import ConfigError


def _env(name: str, *vendor_names: str) -> AliasChoices:
    return AliasChoices(f"MEMBOT_{name}", *vendor_names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEMBOT_",
        env_file=".env",
        extra="ignore",
        populate_by_name=True,
        env_ignore_empty=True,  # `DISCORD_GUILD_ID=` in an env file means unset
    )

    data_dir: Path = Field(
        default=Path("data"),
        description="Where the embedded Qdrant shard and the SQLite checkpoints live.",
    )

    # Long-term memory store.
    qdrant_url: str | None = Field(
        default=None,
        description="Qdrant server URL; unset = embedded Qdrant Edge in data_dir.",
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_collection: str = "membot_memories"
    qdrant_shards: int | None = Field(
        default=None, ge=1, description="Shards of a new collection (server default if unset)."
    )
    qdrant_replication_factor: int | None = Field(
        default=None, ge=1, description="Copies of each shard in a Qdrant cluster (new collection)."
    )
    qdrant_write_consistency_factor: int | None = Field(
        default=None, ge=1, description="Replicas that must confirm a write (new collection)."
    )

    # Conversation checkpoints.
    checkpoint_url: str | None = Field(
        default=None,
        description="postgresql://user:pass@host/db (several replicas), a SQLite path or "
        "sqlite:/// URL; unset = data_dir/checkpoints.sqlite.",
    )

    postgres_checkpoint_connections: int = Field(
        default=10, ge=1, description="Pool size for Postgres checkpoints (server mode)."
    )
    postgres_lock_connections: int = Field(
        default=20,
        ge=1,
        description="Pool size for per-thread turn locks in Postgres: a turn holds one "
        "connection while it runs, so this caps concurrent turns per process.",
    )

    # Chat model.
    llm_provider: Literal["auto", "anthropic", "openai", "offline"] = Field(
        default="auto",
        description="auto = Anthropic if its key is set, else OpenAI, else the offline model.",
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
    )
    anthropic_base_url: str | None = Field(
        default=None, validation_alias=_env("ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL")
    )
    anthropic_model: str = "claude-sonnet-5-5"
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=_env("OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    openai_model: str = "gpt-5.4-mini"
    llm_max_tokens: int = Field(default=1024, ge=1)
    llm_timeout_seconds: float = Field(default=60.0, gt=0)

    # Embeddings.
    embedding_provider: Literal["auto", "local", "openai"] = Field(
        default="auto",
        description="auto = OpenAI embeddings if an OpenAI key is set, else the local model; "
        "an existing embedded store keeps the embedder that built it (qdrant/"
        "membot_embedder.json). An explicit value that contradicts the store is an error.",
    )
    openai_embedding_model: str = "text-embedding-3-small"
    openai_embedding_dims: int = Field(default=1536, ge=1)

    # Memory behaviour.
    memory_top_k: int = Field(default=5, ge=0, le=100)
    memory_min_relevance: float = Field(
        default=0.22,
        description="Relevance (meaning part of the hybrid recall score) below which the "
        "offline model says it doesn't know; calibrated on bench/memory_quality.py.",
    )
    max_message_chars: int = Field(
        default=16_000, ge=1, description="Longer messages get a polite refusal, not a reply."
    )
    history_messages: int = Field(
        default=40, ge=1, description="Most recent thread messages sent to the model."
    )
    context_token_budget: int = Field(
        default=8000,
        ge=500,
        description="Model input budget per turn (system prompt, memories, summary, recent "
        "messages); threads over it are compacted into a running summary.",
    )
    memory_debounce_seconds: float = Field(
        default=2.0,
        ge=0,
        description="Quiet time in a thread before its new messages are mined for memories "
        "(a burst of messages is one extraction).",
    )
    memory_retry_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often learning that failed (memory store down, crash) is retried "
        "from the journal; entries younger than this are left to the process working on them.",
    )
    answer_timeout_seconds: float = Field(
        default=90.0,
        gt=0,
        description="Deadline for the model's answer in a turn, retries included; past it "
        "the user gets an apology and the message stays in the conversation.",
    )
    recall_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Past this, a turn answers without memories."
    )
    inbox_reanswer_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="A message accepted but left unanswered by a crash is answered when the "
        "bot is back if it is younger than this; an older one gets a short note instead.",
    )
    shutdown_grace_seconds: float = Field(
        default=25.0,
        ge=0,
        description="On SIGTERM, how long turns in flight may take to finish (below "
        "Kubernetes' 30 s); a turn that cannot finish is answered after the restart.",
    )
    memory_ttl_days: float | None = Field(
        default=None,
        gt=0,
        description="Memories not read or written for this long expire; unset = kept forever.",
    )

    # Scheduled jobs: "off", "every <N>s|m|h|d", or a crontab line ("0 3 * * *").
    job_ttl_sweep: str = Field(
        default="every 1h", description="Delete expired memories (only with memory_ttl_days)."
    )
    job_consolidate: str = Field(
        default="0 3 * * *", description="Merge near-duplicate memories of each user."
    )
    job_prune_checkpoints: str = Field(
        default="0 4 * * *", description="Delete conversations idle beyond the retention."
    )
    consolidate_threshold: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Similarity above which two memories are merge candidates (a language "
        "model confirms each merge; without one, only pairs above 0.95 merge).",
    )
    episode_retention_days: float | None = Field(
        default=365,
        gt=0,
        description="Messages kept verbatim (episodes) older than this are deleted by the "
        "nightly consolidation job; the facts learnt from them stay. Unset = kept forever.",
    )
    checkpoint_retention_days: float | None = Field(
        default=None,
        gt=0,
        description="Idle conversations older than this are deleted; unset = kept forever.",
    )
    scheduler_enabled: bool = Field(
        default=True,
        description="Run the scheduled jobs in this process. Jobs take a lock in the shared "
        "database, so several replicas may all leave it on.",
    )

    # Platforms. Only plain values live here; the adapters in `bots/` interpret them.
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_BOT_TOKEN", "SLACK_BOT_TOKEN")
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        validation_alias=_env("SLACK_APP_TOKEN", "SLACK_APP_TOKEN"),
        description="xapp- token: Socket Mode. Without it, Slack runs in HTTP mode.",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET")
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base (proxies, tests)."
    )
    slack_admins: str = Field(
        default="",
        description="Comma-separated Slack user ids allowed to /forget others, besides "
        "workspace admins and owners.",
    )
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=_env("DISCORD_TOKEN", "DISCORD_TOKEN")
    )
    discord_guild_id: int | None = Field(
        default=None,
        validation_alias=_env("DISCORD_GUILD_ID", "DISCORD_GUILD_ID"),
        description="Sync slash commands to this guild only (fast, for development).",
    )
    discord_message_content: bool = Field(
        default=False,
        description="Request the privileged message content intent (enable it in the "
        "Developer Portal first): needed to answer thread follow-ups without a mention.",
    )
    discord_api_url: str | None = Field(
        default=None,
        description="Discord REST base instead of https://discord.com/api/v10 (an HTTP "
        "proxy shared by several bots, or tests).",
    )
    discord_gateway_url: str | None = Field(
        default=None, description="Discord gateway instead of wss://gateway.discord.gg/."
    )
    discord_shards: str = Field(
        default="off",
        pattern=r"^(off|auto|\d+(:\d+(,\d+)*)?)$",
        description="off: one gateway connection (discord.Client); auto: AutoShardedClient "
        "with Discord's recommended shard count; N: N shards in this process; N:i,j: this "
        "process runs shards i and j of N (spread shards over replicas).",
    )
    discord_memory_scope: Literal["guild", "global"] = Field(
        default="guild",
        description="guild: a user's memories are per server (and DMs apart); global: one set.",
    )
    discord_owners: str = Field(
        default="",
        pattern=r"^\s*(\d+\s*(,\s*\d+\s*)*(,\s*)?)?$",
        description="Comma-separated Discord user ids of the bot's owners. With the global "
        "memory scope a person's memories are shared by every server, so only they may "
        "/forget-user there (a server's admins rule one server, not the others).",
    )
    http_host: str = "0.0.0.0"
    http_port: int = Field(
        default=3000,
        description="The process's one HTTP server: Slack HTTP-mode events (/slack/events) "
        "and the operations endpoints /healthz, /readyz and /metrics.",
    )
    audit_log: Path | None = Field(
        default=None, description="Admin erasure audit trail; default data_dir/audit.log."
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: one readable line per record; json: one JSON object per line "
        "(time, level, logger, message, exception) for log collectors.",
    )

    @property
    def audit_log_path(self) -> Path:
        return self.audit_log or self.data_dir / "audit.log"

    def resolved_llm_provider(self) -> Literal["anthropic", "openai", "offline"]:
        if self.llm_provider != "auto":
            return self.llm_provider
        if self.anthropic_api_key:
            return "anthropic"
        if self.openai_api_key:
            return "openai"
        return "offline"

    def resolved_embedding_provider(self) -> Literal["local", "openai"]:
        """What the settings alone ask for. Under `auto` an existing embedded store keeps
        the embedder that built it whatever this says: use
        `engine.embeddings.embedding_provider` for the one actually in use."""
        if self.embedding_provider != "auto":
            return self.embedding_provider
        return "openai" if self.openai_api_key else "local"

    def qdrant_collection_options(self) -> dict[str, int]:
        """Options for creating the server collection; the server's defaults for the rest."""
        options = {
            "shard_number": self.qdrant_shards,
            "replication_factor": self.qdrant_replication_factor,
            "write_consistency_factor": self.qdrant_write_consistency_factor,
        }
        return {name: value for name, value in options.items() if value is not None}

    @property
    def store_path(self) -> Path:
        return self.data_dir / "qdrant"

    @classmethod
    def env_names(cls, field_name: str) -> tuple[str, ...]:
        """The environment variables that set `field_name` (`MEMBOT_MEMORY_TOP_K` for
        `memory_top_k`; `MEMBOT_OPENAI_API_KEY` and `OPENAI_API_KEY` for a vendor key):
        operators know the variables, not the field names."""
        field = cls.model_fields[field_name]
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(choice for choice in alias.choices if isinstance(choice, str))
        if isinstance(alias, str):
            return (alias,)
        return (f"{cls.model_config.get('env_prefix', '')}{field_name}".upper(),)


def load_settings(**overrides: Any) -> Settings:
    """`Settings()` from the environment and `.env`, with a validation failure turned into
    one `ConfigError` line that names the variables as the operator wrote them."""
    try:
        return Settings(**overrides)
    except ValidationError as err:
        problems = [_describe_problem(problem) for problem in err.errors()]
        first = problems[0][0] if problems else "MEMBOT_*"
        raise ConfigError(first, " ".join(text for _, text in problems)) from None


def _describe_problem(problem: Any) -> tuple[str, str]:
    """(variable, "VAR='value' is invalid: what is expected. The fix.") for one pydantic
    error; `loc` holds the field name, or the first alias of a field that has aliases."""
    where = str(problem["loc"][0]) if problem.get("loc") else ""
    field_name = _field_of(where)
    if field_name is None:
        return where or "MEMBOT_*", f"{where or 'settings'}: {problem['msg']}."
    variable = _variable_set(Settings.env_names(field_name))
    field = Settings.model_fields[field_name]
    secret = "SecretStr" in str(field.annotation)
    value = "" if secret else f"={_shown(problem.get('input'))}"
    expected = problem["msg"][:1].lower() + problem["msg"][1:]
    default = "" if field.default is None else f" (default {field.default})"
    return variable, (
        f"{variable}{value} is invalid: {expected}. Set it to a valid value, or unset "
        f"{variable}{default}."
    )


def _field_of(where: str) -> str | None:
    """The Settings field an error location names (a field name or one of its variables)."""
    if where in Settings.model_fields:
        return where
    for name in Settings.model_fields:
        if where.upper() in Settings.env_names(name):
            return name
    return None


def _variable_set(names: tuple[str, ...]) -> str:
    """Of the variables that set one field, the one the operator actually set (in the
    environment or `.env`, case-insensitively like pydantic-settings); else the first."""
    env_file = Settings.model_config.get("env_file")
    from_file = (
        dotenv_values(env_file) if isinstance(env_file, str) and Path(env_file).is_file() else {}
    )
    given = {name.upper(): name for name in (*os.environ, *from_file)}
    for name in names:
        if name.upper() in given:
            return name
    return names[0]


def _shown(value: Any) -> str:
    """A rejected value for a message: quoted, and cut short (a pasted file, a JSON blob)."""
    text = repr(value) if isinstance(value, str) else repr(str(value))
    return text if len(text) <= 60 else text[:57] + "...'"
