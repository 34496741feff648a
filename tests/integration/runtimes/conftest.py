"""The mixed-runtime suite's world: one router whose three models live on three runtimes.

* ``local-smollm2``  - runtime llamacpp: a llama-server child the router supervises.
* ``ollama-gemma``   - runtime ollama: the Ollama test server (the double for the ``ollama``
  binary), which forwards generation to a REAL llama-server running gemma-3-270m.
* ``remote-smollm2`` - runtime remote: a second REAL llama-server the test starts itself,
  outside the router, and stops/restarts by pid to play a flaky remote host. The router
  reaches it through a wiretap, so tests can count its health probes and read its headers.

Everything listens on free 127.0.0.1 ports and is stopped when the module ends.

``test_real_ollama.py`` is only collected when ``OLLAMA_URL`` is set: it is an opt-in check
against a real Ollama for machines that have one, and in CI (no OLLAMA_URL) it must not
show up as a skipped test that hides a gap.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.configs import GEMMA_FILE, SMOLLM2_FILE, smollm2, write_config
from tests.support.llama import LlamaServer
from tests.support.ollama_server import LibraryModel, OllamaTestServer
from tests.support.service import ServiceProcess, running_service
from tests.support.wiretap import Wiretap, wiretap

collect_ignore = [] if os.environ.get("OLLAMA_URL") else ["test_real_ollama.py"]

LOCAL = "local-smollm2"
OLLAMA = "ollama-gemma"
REMOTE = "remote-smollm2"
OLLAMA_NAME = "gemma3:270m"
OLLAMA_KEEP_ALIVE = "10m"
HEALTH_INTERVAL_S = 0.5
#: The remote host's credentials and health probe path: both non-default, so a router that
#: ignored them would be seen on the wire (llama-server itself answers either way).
REMOTE_API_KEY = "remote-secret"
REMOTE_HEALTH_PATH = "/v1/models"


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtimes-logs")


@contextmanager
def running_llama(name: str, model_file: Path, logs: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(name, model_file, logs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def remote_llama(logs: Path) -> Iterator[LlamaServer]:
    """The "remote host": a real llama-server (SmolLM2) not started by the router."""
    with running_llama("remote-host", SMOLLM2_FILE, logs) as server:
        yield server


@pytest.fixture(scope="module")
def ollama_backend(logs: Path) -> Iterator[LlamaServer]:
    """The real llama-server (gemma-3-270m) that generates for the Ollama test server."""
    with running_llama("ollama-backend", GEMMA_FILE, logs) as server:
        yield server


@pytest.fixture(scope="module")
def ollama(ollama_backend: LlamaServer) -> Iterator[OllamaTestServer]:
    library = {
        OLLAMA_NAME: LibraryModel(
            GEMMA_FILE, ollama_backend.url, family="gemma3", parameter_size="268.10M", quantization_level="Q4_K_M"
        ),
        "smollm2:135m": LibraryModel(SMOLLM2_FILE),
    }
    with OllamaTestServer(library, pulled=[OLLAMA_NAME]) as server:
        yield server


@pytest.fixture(scope="module")
def remote_tap(remote_llama: LlamaServer) -> Iterator[Wiretap]:
    """The router's only way to the remote host: every probe and request it sends is recorded."""
    with wiretap(lambda: remote_llama.port) as tap:
        yield tap


@pytest.fixture(scope="module")
def router(logs: Path, ollama: OllamaTestServer, remote_tap: Wiretap) -> Iterator[ServiceProcess]:
    config = write_config(
        logs / "mixed.toml",
        {
            LOCAL: smollm2(preload=True, roles=["primary"]),
            OLLAMA: {
                "runtime": "ollama",
                "ollama_model": OLLAMA_NAME,
                "keep_alive": OLLAMA_KEEP_ALIVE,
                "preload": True,
                "roles": ["coder"],
            },
            REMOTE: {
                "runtime": "remote",
                "url": f"http://127.0.0.1:{remote_tap.port}",
                "preload": True,
                "roles": ["critic"],
                "api_key": REMOTE_API_KEY,
                "health_path": REMOTE_HEALTH_PATH,
            },
        },
        runtimes={"ollama": {"url": ollama.url}, "remote": {"health_interval_s": HEALTH_INTERVAL_S}},
    )
    with running_service(config, logs, wait_ready=True) as service:
        yield service
