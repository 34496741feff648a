"""llama.cpp's ``llama-server``: its command line, its readiness signal, one process per model.

Each child gets an API key of its own, fresh at every start, that only the router holds:
its port is reachable by any local process (and by browser pages, through its permissive
CORS), so without the key anything on the host could bypass the router's own key,
admission and metrics. The key travels in the child's environment (``LLAMA_API_KEY``),
which only its owner can read, not on the command line, which ``ps`` shows to everyone.
``/health`` stays open, which is all the readiness probe needs.
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
    ]
    if model.n_gpu_layers is not None:
        argv += ["--n-gpu-layers", str(model.n_gpu_layers)]
    if model.main_gpu is not None:
        argv += ["--main-gpu", str(model.main_gpu)]
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


def free_port() -> int:
    """A port the kernel considers free right now; a lost race makes the child exit, which we handle."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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
    ) -> None:
        self._model = model
        self._binary = binary
        self._model_path = model_path
        self._health_timeout_s = health_timeout_s
        self._health_interval_s = health_interval_s
        self._stop_grace_s = stop_grace_s
        self._log_buffer_lines = log_buffer_lines
        self._child: ChildProcess | None = None
        self._port: int | None = None

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
        self._child = ChildProcess(
            build_argv(self._binary, self._model, self._model_path, self._port, pooling),
            name=f"llama-server[{self._model.id}]",
            log_lines=self._log_buffer_lines,
            env={**os.environ, API_KEY_ENV: api_key},
        )
        try:
            await self._child.spawn()
        except OSError as error:
            raise RuntimeStartError(f"cannot start {self._binary}: {error}") from None
        base_url = f"http://127.0.0.1:{self._port}"
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=2.0) as client:
                await self._child.wait_ready(
                    lambda: _answers_ok(client), self._health_interval_s, self._health_timeout_s
                )
        except ChildStartError as error:
            await self.stop()
            raise RuntimeStartError(error.reason) from None
        return Endpoint(base_url=base_url, model_name=self._model.id, headers={"Authorization": f"Bearer {api_key}"})

    async def wait_until_down(self) -> str:
        assert self._child is not None
        code = await self._child.wait()
        return f"llama-server pid {self._child.pid} exited with code {code}:\n{self._child.log_tail()}"

    async def stop(self) -> None:
        if self._child is not None:
            await self._child.terminate(self._stop_grace_s)

    def process_info(self) -> ProcessInfo | None:
        return self._child.info(self._port) if self._child else None

    def log_lines(self) -> Sequence[str]:
        return self._child.log_lines() if self._child else []
