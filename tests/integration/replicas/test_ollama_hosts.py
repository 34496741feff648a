"""An Ollama model on two Ollama hosts (``urls``): both serve it. The hosts are the Ollama test double
(tests/support/ollama_server.py, no Ollama binary here), generating with one real llama-server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.integration.replicas.conftest import StartService
from tests.support.configs import GEMMA_FILE
from tests.support.llama import LlamaServer
from tests.support.ollama_server import LibraryModel, OllamaTestServer

NAME = "gemma3:270m"
ASK = {"model": "gem", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[OllamaTestServer]]:
    backend = LlamaServer("ollama-backend", GEMMA_FILE, tmp_path, parallel=2, ctx_size=1024)
    backend.start()
    try:
        with ExitStack() as stack:
            library = {NAME: LibraryModel(GEMMA_FILE, backend.url)}
            yield [stack.enter_context(OllamaTestServer(library, pulled=[NAME])) for _ in range(2)]
    finally:
        backend.stop()


def test_both_ollama_hosts_serve_the_one_model(start_service: StartService, hosts: list[OllamaTestServer]) -> None:
    model = {
        "runtime": "ollama",
        "ollama_model": NAME,
        "urls": [host.url for host in hosts],
        "parallel": 1,
        "preload": True,
    }
    service = start_service({"gem": model})
    with httpx.Client(base_url=service.url, timeout=120) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=ASK), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert all(host.requests_to("/v1/chat/completions") for host in hosts), [len(h.requests) for h in hosts]
