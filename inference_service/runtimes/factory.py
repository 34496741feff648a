"""Build the right Runtime for each configured model."""

from __future__ import annotations

from pathlib import Path

from inference_service.config import ModelConfig, Settings
from inference_service.runtimes.base import Runtime
from inference_service.runtimes.llamacpp import LlamaCppRuntime
from inference_service.runtimes.remote import RemoteRuntime


def runtime_factory(settings: Settings, llama_server: Path | None):
    """A ``ModelConfig -> Runtime`` function for the supervisor."""

    def create(model: ModelConfig) -> Runtime:
        if model.runtime == "llamacpp":
            return LlamaCppRuntime(
                model,
                binary=llama_server,
                model_path=settings.model_path(model),
                health_timeout_s=settings.health_timeout_s,
                health_interval_s=settings.health_interval_s,
                stop_grace_s=settings.stop_grace_s,
                log_buffer_lines=settings.log_buffer_lines,
            )
        if model.runtime == "remote":
            return RemoteRuntime(model, health_interval_s=settings.runtimes.remote.health_interval_s)
        raise NotImplementedError(model.runtime)

    return create
