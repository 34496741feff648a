"""A real ``llama-server`` that a test starts itself, outside any router: the "other host"
behind a ``runtime = "remote"`` model, or the generator behind the Ollama test server.

Started and stopped by pid, and restartable on the same port so a test can take a remote
host down and bring it back without the router noticing anything but its health probes.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx

from inference_service.config import ModelConfig, load_settings
from inference_service.provisioning.llamacpp import configured_binary
from inference_service.runtimes.llamacpp import build_argv
from tests.support.service import free_port, wait_for_http

_PREDICTED = re.compile(r"^llamacpp:tokens_predicted_total\s+([0-9.e+]+)$", re.MULTILINE)


def llama_server_binary() -> Path:
    """The binary the default config would run; the suite cannot work without it."""
    binary = configured_binary(load_settings())
    if binary is None:
        raise RuntimeError("no llama-server binary: run `inference-service runtime install` (make setup) first")
    return binary


class LlamaServer:
    """One llama-server process serving ``gguf`` on a fixed free port."""

    def __init__(self, name: str, gguf: Path, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._argv = build_argv(llama_server_binary(), ModelConfig(id=name, path=gguf, ctx_size=1024, parallel=2, n_gpu_layers=0),
                                gguf, self.port)  # fmt: skip
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def start(self, timeout_s: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_http(self.url + "/health", timeout_s, self._process)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM our process (by pid), SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tokens_predicted(url: str, headers: dict[str, str] | None = None) -> float:
    """``llamacpp:tokens_predicted_total`` of the llama-server at ``url``: proof of which server generated."""
    text = httpx.get(url + "/metrics", headers=headers, timeout=10).text
    match = _PREDICTED.search(text)
    if match is None:
        raise AssertionError(f"{url}/metrics has no tokens_predicted_total:\n{text[:500]}")
    return float(match[1])
