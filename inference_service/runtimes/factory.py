"""Build the right Runtime for each configured model."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from inference_service.config import ModelConfig, RuntimeKind, Settings
from inference_service.events import EventBus
from inference_service.runtimes.base import Runtime
from inference_service.runtimes.kv_slots import SlotKeeper
from inference_service.runtimes.kv_store import KVFileStore
from inference_service.runtimes.llamacpp import LlamaCppRuntime
from inference_service.runtimes.ollama import OllamaRuntime, OllamaServer
from inference_service.runtimes.probe import HealthProber
from inference_service.runtimes.remote import RemoteRuntime

RUNTIME_CLASSES: dict[RuntimeKind, type[Runtime]] = {
    "llamacpp": LlamaCppRuntime,
    "ollama": OllamaRuntime,
    "remote": RemoteRuntime,
}


def served_paths(kind: RuntimeKind) -> frozenset[str] | None:
    """The API paths a runtime kind serves (None: unknown, forward anything)."""
    return RUNTIME_CLASSES[kind].served_paths


def holds_capacity(kind: RuntimeKind) -> bool:
    """Whether a runtime kind's models take this host's memory (a local process), so capacity limits count them."""
    return RUNTIME_CLASSES[kind].local


def ollama_server(settings: Settings, prober: HealthProber) -> OllamaServer | None:
    """The shared ``ollama serve`` child when ``runtimes.ollama.spawn`` is on, else None."""
    config = settings.runtimes.ollama
    if not config.spawn:
        return None
    binary = shutil.which("ollama")
    return OllamaServer(
        config.url,
        binary=Path(binary) if binary else None,
        health_timeout_s=settings.health_timeout_s,
        health_interval_s=settings.health_interval_s,
        stop_grace_s=settings.stop_grace_s,
        log_buffer_lines=settings.log_buffer_lines,
        prober=prober,
    )


def slot_keeper(
    model: ModelConfig, settings: Settings, kv_store: KVFileStore | None, events: EventBus | None
) -> SlotKeeper | None:
    """Who keeps a llamacpp model's slots across stops: nobody when the disk budget is 0, or for an
    embeddings model (its requests leave nothing in a slot worth keeping)."""
    if kv_store is None or not kv_store.enabled or model.embeddings:
        return None
    return SlotKeeper(model, kv_store, settings.kv_cache_timeout_s, events)


def runtime_factory(
    settings: Settings,
    llama_server: Path | None,
    events: EventBus | None = None,
    kv_store: KVFileStore | None = None,
) -> Callable[[ModelConfig], Runtime]:
    """A ``ModelConfig -> Runtime`` function for the supervisor.

    Every Ollama model shares one server (and, with ``spawn``, one child process), so the
    server object is created once here rather than per model. Likewise every remote and
    Ollama model shares one health prober: one probe per host and interval, one HTTP client.
    Every llamacpp model keeps its slots in the one ``kv_store`` (publishing on ``events``).
    """
    prober = HealthProber(settings.runtimes.remote.health_interval_s)
    shared_ollama = ollama_server(settings, prober)

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
                slot_keeper=slot_keeper(model, settings, kv_store, events),
            )
        if model.runtime == "ollama":
            return OllamaRuntime(  # a replica of a model on several Ollama hosts: its own host, never spawned
                model,
                url=model.url if model.urls and model.url else settings.runtimes.ollama.url,
                health_interval_s=settings.runtimes.remote.health_interval_s,
                load_timeout_s=settings.health_timeout_s,
                server=None if model.urls else shared_ollama,
                prober=prober,
            )
        if model.runtime == "remote":
            return RemoteRuntime(model, health_interval_s=settings.runtimes.remote.health_interval_s, prober=prober)
        raise NotImplementedError(model.runtime)

    return create
