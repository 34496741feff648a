"""A real ``llama-server`` that a test starts itself, outside any router: the "other host"
behind a ``runtime = "remote"`` model, or the generator behind the Ollama test server.

Started and stopped by pid, and restartable on the same port so a test can take a remote
host down and bring it back without the router noticing anything but its health probes.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from inference_service.config import ModelConfig, load_settings
from inference_service.provisioning.llamacpp import configured_binary
from inference_service.runtimes.llamacpp import build_argv
from tests.support.service import free_port, stop_tree, wait_for_http

_PREDICTED = re.compile(r"^llamacpp:tokens_predicted_total\s+([0-9.e+]+)$", re.MULTILINE)


def llama_server_binary() -> Path:
    """The binary the default config would run; the suite cannot work without it."""
    binary = configured_binary(load_settings())
    if binary is None:
        raise RuntimeError("no llama-server binary: run `inference-service runtime install` (make setup) first")
    return binary


class LlamaServer:
    """One llama-server process serving ``gguf`` on a fixed free port."""

    def __init__(self, name: str, gguf: Path, log_dir: Path, port: int | None = None, **model_fields: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        fields = {"ctx_size": 1024, "parallel": 2, "n_gpu_layers": 0, **model_fields}
        self.argv = build_argv(llama_server_binary(), ModelConfig(id=name, path=gguf, **fields), gguf, self.port)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_http(self.url + "/health", timeout_s, self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM our process (by pid), SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            stop_tree(process, timeout_s)


def direct_start_s(gguf: Path, log_dir: Path, **model_fields: Any) -> float:
    """Seconds a llama-server takes to answer ``/health`` when started directly, without a router.

    The CPU-bound part of any load: timing it in the same test, under the same machine load,
    gives a bound that stretches with contention while the router's own share stays fixed.
    """
    server = LlamaServer("direct-start", gguf, log_dir, **model_fields)
    started = time.monotonic()
    server.start()
    elapsed = time.monotonic() - started
    server.stop()
    return elapsed


def direct_failure_s(gguf: Path, log_dir: Path, **model_fields: Any) -> float:
    """Seconds a llama-server that cannot start (a bad flag, a corrupt file) takes to exit when run directly."""
    server = LlamaServer("direct-failure", gguf, log_dir, **model_fields)
    started = time.monotonic()
    with server.log_path.open("ab") as log:
        process = subprocess.Popen(server.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return time.monotonic() - started


def tokens_predicted(url: str, headers: dict[str, str] | None = None) -> float:
    """``llamacpp:tokens_predicted_total`` of the llama-server at ``url``: proof of which server generated."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    match = _PREDICTED.search(text)
    if match is None:
        raise AssertionError(f"{url}/metrics has no tokens_predicted_total:\n{text[:500]}")
    return float(match[1])


def tokens_predicted_by_model(service_url: str) -> dict[str, float]:
    """Every loaded llamacpp model's own ``tokens_predicted_total``, read from its child's /metrics.

    Which model served a request is proved by whose counter moved - not by the ``model``
    field of the response, which the router writes itself. Each child wants the key only its
    router holds, so the counters are read through the router's ``/upstream/{model}/metrics``
    pass-through, which relays the child's own page and never loads a model.
    """
    cards = httpx.get(f"{service_url}/v1/models", timeout=30).json()["data"]
    return {
        card["id"]: tokens_predicted(f"{service_url}/upstream/{card['id']}")
        for card in cards
        if card.get("runtime") == "llamacpp" and card.get("status") == "loaded"
    }


def generated_by(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """The models whose counters moved between two :func:`tokens_predicted_by_model` readings, and by how much."""
    return {
        model_id: after[model_id] - before.get(model_id, 0.0)
        for model_id in after
        if after[model_id] != before.get(model_id, 0.0)
    }
