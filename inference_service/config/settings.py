"""The whole service configuration, validated as one object (``Settings``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from inference_service.config.fields import CACHE_DIR, LIVE, STARTUP
from inference_service.config.keys import KeyConfig, check_keys
from inference_service.config.models import ModelConfig
from inference_service.config.tables import PresetConfig, RuntimesConfig, TracingConfig


class Settings(BaseSettings):
    """The whole service configuration. Top-level keys are overridable as ``INFERENCE_<KEY>``."""

    model_config = SettingsConfigDict(env_prefix="INFERENCE_", extra="forbid", env_nested_delimiter="__")

    host: Annotated[str, STARTUP] = "127.0.0.1"
    port: Annotated[int, STARTUP] = Field(default=8085, ge=0, le=65535)
    api_key: Annotated[SecretStr | None, LIVE] = None  # one more key (router/tenancy/keys.py)
    log_level: Annotated[Literal["debug", "info", "warning", "error"], STARTUP] = "info"
    log_format: Annotated[Literal["text", "json"], STARTUP] = Field(
        default="text", description="json: one object per line, for log shippers"
    )
    models_dir: Annotated[Path, STARTUP] = CACHE_DIR / "models"
    package_index_url: Annotated[str, STARTUP] = "https://pypi.org/simple"
    default_model: Annotated[str | None, LIVE] = None
    model_prefixes: Annotated[list[str], LIVE] = ["inference:", "local:"]
    list_aliases: Annotated[bool, LIVE] = Field(
        default=False, description="list each alias in /v1/models as an entry of its own"
    )
    max_body_bytes: Annotated[int, STARTUP] = Field(default=4 * 1024 * 1024, gt=0)
    max_reply_bytes: Annotated[int, STARTUP] = Field(
        default=256 * 1024 * 1024, gt=0, description="a runtime's non-streamed reply beyond this is refused with 502"
    )
    max_logprobs: Annotated[int, LIVE] = Field(
        default=20, ge=0, description="most top_logprobs/n_probs a request may ask for (400 past)"
    )
    header_timeout_s: Annotated[float, STARTUP] = Field(
        default=10.0, gt=0, description="a connection must send a request's headers within this"
    )
    body_timeout_s: Annotated[float, STARTUP] = Field(
        default=60.0, gt=0, description="a request's whole body must arrive within this of its headers, else 408"
    )
    max_connections: Annotated[int, STARTUP] = Field(
        default=512, ge=1, description="open client connections; beyond this a request gets 503"
    )
    queue_size: Annotated[int, LIVE] = Field(
        default=64, ge=0, description="waiting requests per model beyond its parallel slots"
    )
    queue_timeout_s: Annotated[float, LIVE] = Field(default=300.0, gt=0)
    stream_send_timeout_s: Annotated[float, LIVE] = Field(
        default=30.0, gt=0, description="a stream whose client accepts nothing for this long is cancelled"
    )
    max_loaded_models: Annotated[int | None, LIVE] = Field(default=None, ge=0)
    memory_budget_mb: Annotated[int | None, LIVE] = Field(default=None, gt=0)
    swap_max_wait_s: Annotated[float, LIVE] = Field(
        default=10.0,
        ge=0,
        description="how long a model waiting for capacity lets busy models keep serving their queue",
    )
    health_timeout_s: Annotated[float, STARTUP] = Field(default=120.0, gt=0)
    health_interval_s: Annotated[float, STARTUP] = Field(default=0.05, gt=0, le=0.1)
    stop_grace_s: Annotated[float, STARTUP] = Field(default=8.0, ge=0)
    drain_timeout_s: Annotated[float, LIVE] = Field(default=30.0, ge=0)
    shutdown_grace_s: Annotated[float, LIVE] = Field(
        default=30.0, ge=0, description="on SIGTERM, how long running requests may finish before they are cut off"
    )
    restart_max_attempts: Annotated[int, LIVE] = Field(default=5, ge=0)
    resume_streams: Annotated[bool, LIVE] = Field(
        default=True, description="continue a stream whose runtime died mid-answer on the restarted model or a fallback"
    )
    resume_max_attempts: Annotated[int, LIVE] = Field(
        default=2, ge=0, description="how many times one stream is resumed; a non-streamed request is retried once"
    )
    resume_replay_max_tokens: Annotated[int, LIVE] = Field(
        default=256,
        ge=0,
        description="a greedy or seeded stream cut this many tokens in or fewer is generated again and relayed from"
        " the cut, the uninterrupted answer exactly; others are continued from their text (0: always)",
    )
    failed_retry_s: Annotated[float, LIVE] = Field(
        default=10.0, ge=0, description="requests to a failed local model get 503 this long before it is tried again"
    )
    log_buffer_lines: Annotated[int, STARTUP] = Field(default=500, ge=10)
    # Read once by the runtimes' KV file store (runtimes/kv_store.py, built at start-up).
    kv_cache_dir: Annotated[Path, STARTUP] = Field(
        default=CACHE_DIR / "kv", description="where llamacpp models' slot KV caches are kept across stops"
    )
    kv_cache_disk_mb: Annotated[int, STARTUP] = Field(
        default=2048, ge=0, description="disk for saved KV caches, all models together (oldest go first); 0 disables"
    )
    kv_cache_timeout_s: Annotated[float, STARTUP] = Field(
        default=10.0, gt=0, description="how long saving slots may delay a stop (and restoring them a load)"
    )
    runtimes: Annotated[RuntimesConfig, STARTUP] = RuntimesConfig()
    tracing: Annotated[TracingConfig, STARTUP] = TracingConfig()
    models: Annotated[dict[str, ModelConfig], LIVE] = {}
    presets: Annotated[dict[str, PresetConfig], LIVE] = {}
    keys: Annotated[dict[str, KeyConfig], LIVE] = Field(
        default={}, description="API keys by name (config/keys.py); api_key is one more"
    )
    usage_db: Annotated[Path, STARTUP] = Field(
        default=CACHE_DIR / "usage.db", description="the router's SQLite database (usage ledger, activity history)"
    )
    activity_retention_days: Annotated[float, LIVE] = Field(
        default=7.0, gt=0, description="how long the activity history (and its captures) is kept"
    )
    capture_max_bytes: Annotated[int, LIVE] = Field(
        default=64 * 1024, ge=0, description="a captured request or response body is kept up to this many bytes"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        if settings_cls.model_config.get("toml_file"):
            sources += (TomlConfigSettingsSource(settings_cls),)
        return sources

    @model_validator(mode="before")
    @classmethod
    def _ids_from_keys(cls, data: Any) -> Any:
        """A model's id (a key's name) is its table key; copy it in so each table is self-describing."""
        for table, field in (("models", "id"), ("keys", "name")):
            if isinstance(data, dict) and isinstance(data.get(table), dict):
                data[table] = {
                    key: ({**value, field: key} if isinstance(value, dict) else value)
                    for key, value in data[table].items()
                }
        return data

    @model_validator(mode="after")
    def _names_unique_and_known(self) -> Settings:
        seen: dict[str, str] = {}
        for model in self.models.values():
            for name in (model.id, *model.aliases):
                if name in seen:
                    raise ValueError(f"models.{model.id}: name {name!r} is already used by models.{seen[name]}")
                seen[name] = model.id
        if self.default_model is not None and self.default_model not in seen:
            raise ValueError(f"default_model: {self.default_model!r} is not a configured model or alias")
        self._check_fallbacks(seen)
        check_keys(self.keys, seen, self.api_key)
        for name, preset in self.presets.items():
            for ref in preset.models:
                if ref not in seen:
                    raise ValueError(f"presets.{name}.models: {ref!r} is not a configured model or alias")
        return self

    def stream_send_timeout_for(self, model_id: str) -> float:
        return self.models[model_id].stream_send_timeout_s or self.stream_send_timeout_s

    def _check_fallbacks(self, names: dict[str, str]) -> None:
        """Fallbacks name other configured models, and following them never leads back (no cycle)."""
        for model in self.models.values():
            for ref in model.fallbacks:
                if ref not in names:
                    raise ValueError(f"models.{model.id}.fallbacks: {ref!r} is not a configured model or alias")
                if names[ref] == model.id:
                    raise ValueError(f"models.{model.id}.fallbacks: a model cannot be its own fallback")
        for start in self.models:
            path, frontier = [start], [start]
            while frontier:
                current = frontier.pop()
                for ref in self.models[current].fallbacks:
                    target = names[ref]
                    if target == start:
                        cycle = " -> ".join([*path, target])
                        raise ValueError(f"models.{start}.fallbacks: fallbacks form a cycle ({cycle})")
                    if target not in path:
                        path.append(target)
                        frontier.append(target)

    def fallback_chain(self, model_id: str) -> list[str]:
        """The models to try after ``model_id``, in order: its fallbacks, then theirs (ids, no repeats)."""
        names = {name: m.id for m in self.models.values() for name in (m.id, *m.aliases)}
        chain: list[str] = []
        pending = [names[ref] for ref in self.models[model_id].fallbacks]
        while pending:
            candidate = pending.pop(0)
            if candidate != model_id and candidate not in chain:
                chain.append(candidate)
                pending += [names[ref] for ref in self.models[candidate].fallbacks]
        return chain

    def model_id(self, name: str) -> str | None:
        """The id of the model called ``name`` (its id or one of its aliases), if any."""
        for model in self.models.values():
            if name == model.id or name in model.aliases:
                return model.id
        return None

    def model_path(self, model: ModelConfig) -> Path:
        """Absolute GGUF path: relative paths live in ``models_dir``."""
        assert model.path is not None
        path = model.path.expanduser()
        return path if path.is_absolute() else self.models_dir.expanduser() / path
