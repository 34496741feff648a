"""Estimate a model's memory before loading it: the GGUF weights, the KV cache and the prompt cache.

Only the GGUF header is read (:mod:`inference_service.runtimes.gguf`). Reading it is file
parsing - a 256k-entry vocabulary is a quarter of a million strings to step over - so the
actor measures in a worker thread (:meth:`Footprint.measure`) before any capacity decision reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from inference_service.config import ModelConfig, Settings
from inference_service.runtimes.gguf import GGUFError, Scalar, read_metadata

_KV_BYTES_PER_ELEMENT = 2  # llama-server's default f16 KV cache
_OVERHEAD_MB = 64  # compute buffers and the server itself, measured ~50-70 MB on CPU


def kv_cache_bytes(metadata: dict[str, Scalar], ctx_size: int) -> int:
    arch = str(metadata.get("general.architecture", "llama"))

    def field(name: str, default: int = 0) -> int:
        value = metadata.get(f"{arch}.{name}", default)
        return int(value) if isinstance(value, (int, float)) else default

    layers = field("block_count")
    heads = field("attention.head_count", 1) or 1
    kv_heads = field("attention.head_count_kv", heads) or heads
    head_dim = field("attention.key_length", field("embedding_length") // heads)
    value_dim = field("attention.value_length", head_dim)
    context = ctx_size or field("context_length")
    return layers * context * kv_heads * (head_dim + value_dim) * _KV_BYTES_PER_ELEMENT


def estimate_mb(path: Path | None, ctx_size: int, cache_ram_mb: int = 0) -> int:
    """Weights + KV cache + llama-server's prompt cache bound (``--cache-ram``) + fixed overhead, in MiB.

    An unreadable header counts weights only; no file to read (not a llama.cpp model, or its
    file not pulled yet) counts 0."""
    if path is None or not path.is_file():
        return 0
    weights = path.stat().st_size
    try:
        kv = kv_cache_bytes(read_metadata(path), ctx_size)
    except (GGUFError, OSError):
        kv = 0
    return int((weights + kv) / 2**20) + cache_ram_mb + _OVERHEAD_MB


def model_estimate_mb(settings: Settings, model: ModelConfig) -> int:
    """:func:`estimate_mb` of a configured model: what the capacity scheduler counts for it (0 without a file)."""
    path = settings.model_path(model) if model.path is not None else None
    return estimate_mb(path, model.ctx_size, model.cache_ram_mb)


async def measure_mb(settings: Settings, model: ModelConfig) -> int:
    """:func:`model_estimate_mb` in a worker thread, off the event loop (no thread for a model without a file)."""
    return await asyncio.to_thread(model_estimate_mb, settings, model) if model.path is not None else 0


class Footprint:
    """One config's memory estimate, read at most once; the actor makes a new one with each config it takes.

    So a measurement still under way when a restarting reload replaces the config lands on
    the old object, never as the new config's estimate. ``settings`` gives the ones in force
    (they say where a relative model path lives).
    """

    def __init__(self, config: ModelConfig, settings: Callable[[], Settings]) -> None:
        self._config = config
        self._settings = settings
        self.known_mb: int | None = None  # None until read

    @property
    def mb(self) -> int:
        """The estimate, 0 when unknown; read here, on the event loop, only by a reader that came before :meth:`measure`."""
        if self.known_mb is None:
            self.known_mb = model_estimate_mb(self._settings(), self._config)
        return self.known_mb

    async def measure(self) -> None:
        """Read the GGUF header off the event loop: a large vocabulary stalled every request up to a second."""
        if self.known_mb is None:
            measured = await measure_mb(self._settings(), self._config)
            if self.known_mb is None:
                self.known_mb = measured
