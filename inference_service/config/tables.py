"""The smaller tables: ``[presets.*]``, ``[runtimes.*]`` and ``[tracing]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
)

from inference_service.config.fields import StrictTable


class PresetConfig(StrictTable):
    """A named orchestration recipe: ``[presets.<name>]``."""

    orchestration_mode: Literal["single", "critique", "debate", "ensemble", "pipeline"] = "single"
    models: list[str] = []
    roles: dict[str, str] = {}


class LlamaCppRuntimeConfig(StrictTable):
    binary: Path | None = None
    version: str = "11434.0.0"
    cuda: bool = False


class OllamaRuntimeConfig(StrictTable):
    url: str = "http://127.0.0.1:11434"
    spawn: bool = False


class RemoteRuntimeConfig(StrictTable):
    health_interval_s: float = Field(default=2.0, gt=0)


class RuntimesConfig(StrictTable):
    llamacpp: LlamaCppRuntimeConfig = LlamaCppRuntimeConfig()
    ollama: OllamaRuntimeConfig = OllamaRuntimeConfig()
    remote: RemoteRuntimeConfig = RemoteRuntimeConfig()


class TracingConfig(StrictTable):
    """``[tracing]``: OpenTelemetry traces over OTLP/HTTP, on once an endpoint is set. Each key has the
    SDK's standard ``OTEL_*`` variable, which wins (router/observability/tracing/settings.py)."""

    endpoint: str | None = Field(default=None, description="collector base URL; /v1/traces is appended")
    traces_endpoint: str | None = Field(default=None, description="the full traces URL (wins over endpoint)")
    protocol: Literal["http/protobuf"] = "http/protobuf"
    service_name: str | None = Field(default=None, min_length=1, description="unset: inference-service")
    sampler: Literal[
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    ] = "parentbased_always_on"
    sampler_arg: float | None = Field(default=None, ge=0, le=1, description="the ratio of the *traceidratio samplers")
    resource_attributes: dict[str, str] = {}
    capture_message_content: bool = Field(default=False, description="prompts and completions on spans (private!)")
