"""llama.cpp's ``llama-server``: its command line, its readiness signal, one process per model.

Each child gets an API key of its own, fresh at every start, that only the router holds:
its port is reachable by any local process (and by browser pages, through its permissive
CORS), so without the key anything on the host could bypass the router's own key,
admission and metrics. The key travels in the child's environment (``LLAMA_API_KEY``),
which only its owner can read, not on the command line, which ``ps`` shows to everyone.
``/health`` stays open, which is all the readiness probe needs.

Its in-RAM prompt cache is bounded by the model's ``cache_ram_mb`` (llama-server's own
default, 8 GiB, is far beyond any memory estimate); its slots outlive a graceful stop
through a :class:`~inference_service.runtimes.kv_slots.SlotKeeper`, saved before the process
is stopped and restored once it is healthy, before :meth:`LlamaCppRuntime.start` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import Sequence
from pathlib import Path

import httpx

from inference_service.config import ModelConfig
from inference_service.processes import ChildProcess, ChildStartError, ProcessInfo
from inference_service.runtimes.base import LLAMA_SERVER_PATHS, Endpoint, RuntimeStartError
from inference_service.runtimes.gguf import GGUFError, declared_pooling
from inference_service.runtimes.kv_slots import SlotKeeper


def build_argv(binary: Path, model: ModelConfig, model_path: Path, port: int, pooling: str | None = None) -> list[str]:
    """The exact ``llama-server`` command line for a model (flag spellings from ``llama-server --help``).

    ``pooling`` is the embeddings pooling to impose (see :func:`embedding_pooling`)."""
    argv = [
        str(binary),
        "--model",
        str(model_path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--alias",
        model.id,
        "--ctx-size",
        str(model.ctx_size),
        "--parallel",
        str(model.concurrency),
        "--metrics",
        "--slots",
        "--cache-ram",
        str(model.cache_ram_mb),
    ]
    if model.n_gpu_layers is not None:
        argv += ["--n-gpu-layers", str(model.n_gpu_layers)]
    if model.main_gpu is not None or model.devices is not None:  # a pinned replica: its first visible GPU
        argv += ["--main-gpu", str(model.main_gpu or 0)]
    if model.tensor_split:
        argv += ["--tensor-split", ",".join(f"{share:g}" for share in model.tensor_split)]
    if model.flash_attn is not None:
        argv += ["--flash-attn", "on" if model.flash_attn else "off"]
    if model.embeddings:
        argv.append("--embeddings")
        if pooling is not None:
            argv += ["--pooling", pooling]
    return argv + list(model.extra_args)


def embedding_pooling(model: ModelConfig, model_path: Path) -> str | None:
    """The ``--pooling`` an embeddings model needs: the configured one, else none when the GGUF
    declares its own, else ``mean`` (a chat model pools with ``none``, which llama-server's
    OpenAI ``/v1/embeddings`` refuses)."""
    if not model.embeddings:
        return None
    if model.pooling is not None:
        return model.pooling
    try:
        declared = declared_pooling(model_path)
    except (OSError, GGUFError):
        declared = None
    return None if declared is not None else "mean"


#: The environment variable llama-server reads ``--api-key`` from (common/arg.cpp).
API_KEY_ENV = "LLAMA_API_KEY"


def device_environment(model: ModelConfig) -> dict[str, str]:
    """The GPUs a pinned replica may see (``replica_devices``): the CUDA runtime hides the others, so the
    replica's ``--main-gpu``, ``--tensor-split`` and device indices count within its own list."""
    if model.devices is None:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(device) for device in model.devices)}


def free_port() -> int:
    """A port the kernel considers free right now; a lost race makes the child exit, which we handle."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client(endpoint: Endpoint, timeout_s: float | None) -> httpx.AsyncClient:
    """A client for the child's own API, with the key only the router holds."""
    return httpx.AsyncClient(base_url=endpoint.base_url, headers=dict(endpoint.headers), timeout=timeout_s)


async def _answers_ok(client: httpx.AsyncClient) -> bool:
    """llama-server's readiness: ``/health`` is 503 while the model loads, 200 when it serves."""
    with contextlib.suppress(httpx.HTTPError):
        return (await client.get("/health")).status_code == 200
    return False


class LlamaCppRuntime:
    """A model served by a ``llama-server`` child we spawn and own."""

    self_healing = False
    local = True
    served_paths: frozenset[str] | None = LLAMA_SERVER_PATHS

    def __init__(
        self,
        model: ModelConfig,
        binary: Path | None,
        model_path: Path,
        health_timeout_s: float,
        health_interval_s: float,
        stop_grace_s: float,
        log_buffer_lines: int,
        slot_keeper: SlotKeeper | None = None,
    ) -> None:
        self._model = model
        self._binary = binary
        self._model_path = model_path
        self._health_timeout_s = health_timeout_s
        self._health_interval_s = health_interval_s
        self._stop_grace_s = stop_grace_s
        self._log_buffer_lines = log_buffer_lines
        self._slot_keeper = slot_keeper
        self._child: ChildProcess | None = None
        self._port: int | None = None
        self._endpoint: Endpoint | None = None  # set once the child serves: only then are its slots worth saving

    async def start(self) -> Endpoint:
        if self._binary is None:
            raise RuntimeStartError(
                "no llama-server binary: run `inference-service runtime install` or set LLAMA_SERVER_BIN"
            )
        if not self._model_path.is_file():
            raise RuntimeStartError(
                f"model file {self._model_path} not found: run `inference-service models pull {self._model.id}`"
            )
        await self.stop()
        self._port = free_port()
        api_key = secrets.token_urlsafe(32)
        pooling = await asyncio.to_thread(embedding_pooling, self._model, self._model_path)
        argv = build_argv(self._binary, self._model, self._model_path, self._port, pooling)
        if self._slot_keeper is not None:
            argv += await self._slot_keeper.prepare(self._binary, self._model_path)
        self._child = ChildProcess(
            argv,
            name=f"llama-server[{self._model.replica_name}]",
            log_lines=self._log_buffer_lines,
            env={**os.environ, **device_environment(self._model), API_KEY_ENV: api_key},
        )
        try:
            await self._child.spawn()
        except OSError as error:
            raise RuntimeStartError(f"cannot start {self._binary}: {error}") from None
        endpoint = Endpoint(
            base_url=f"http://127.0.0.1:{self._port}",
            model_name=self._model.id,
            headers={"Authorization": f"Bearer {api_key}"},
        )
        try:
            async with _client(endpoint, timeout_s=2.0) as client:
                await self._child.wait_ready(
                    lambda: _answers_ok(client), self._health_interval_s, self._health_timeout_s
                )
        except ChildStartError as error:
            await self.stop()
            raise RuntimeStartError(error.reason) from None
        if self._slot_keeper is not None:
            async with _client(endpoint, timeout_s=None) as client:
                await self._slot_keeper.restore(client, self._child)
        self._endpoint = endpoint
        return endpoint

    async def wait_until_down(self) -> str:
        assert self._child is not None
        code = await self._child.wait()
        return f"llama-server pid {self._child.pid} exited with code {code}:\n{self._child.log_tail()}"

    async def stop(self) -> None:
        """Save the slots of a child that served and still runs (a crashed one has nothing left), then stop it."""
        if self._child is None:
            return
        endpoint, self._endpoint = self._endpoint, None
        if self._slot_keeper is not None and endpoint is not None and self._child.returncode is None:
            async with _client(endpoint, timeout_s=None) as client:
                await self._slot_keeper.save(client, self._child)
        await self._child.terminate(self._stop_grace_s)
        if self._slot_keeper is not None:
            await self._slot_keeper.discard_partials(self._child)

    def process_info(self) -> ProcessInfo | None:
        return self._child.info(self._port) if self._child else None

    def log_lines(self) -> Sequence[str]:
        return self._child.log_lines() if self._child else []
