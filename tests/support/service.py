"""Start a real ``inference-service serve`` subprocess for a test, and always stop it.

Shared by the integration tests that need a router with a config of their own
(capacity limits, an API key, a small queue ...) and by ``tests/stack.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_http(
    url: str, timeout_s: float, process: subprocess.Popen[bytes] | None = None, ok: tuple[int, ...] = (200,)
) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).status_code in ok:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f}s")


def stop_tree(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM a process we started, SIGKILL it if it lingers, then kill any child it left behind."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for child in children:  # never leave a llama-server behind, even if the parent misbehaved
        with suppress(psutil.NoSuchProcess):
            child.kill()


@dataclass
class ServiceProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def children(self) -> list[psutil.Process]:
        """Live descendants (llama-server children) of the router process."""
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the router (it stops its children); SIGKILL and child cleanup as a last resort."""
        stop_tree(self.process, timeout_s)


@contextmanager
def running_service(
    config_path: Path,
    log_dir: Path,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    wait_ready: bool = False,
    wait_healthy: bool = True,
    extra_args: Sequence[str] = (),
) -> Iterator[ServiceProcess]:
    """Run ``inference-service serve --config config_path`` on a free port until the block exits.

    Waits for ``/health`` (or ``/health/ready`` with ``wait_ready``); ``wait_healthy=False``
    returns at once, for tests of a router that is still starting up.
    """
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"service-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "inference_service",
                "serve",
                "--config",
                str(config_path),
                "--port",
                str(port),
                *extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
        )
    service = ServiceProcess(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        if wait_healthy:
            wait_for_http(service.url + ("/health/ready" if wait_ready else "/health"), ready_timeout_s, process)
        yield service
    except BaseException:
        sys.stderr.write(f"--- service log ({log_path}) ---\n{service.log()[-4000:]}\n")
        raise
    finally:
        service.stop()
