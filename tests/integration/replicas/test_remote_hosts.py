"""A remote model on two hosts (``urls``): both real llama-servers serve it, and one down leaves the other serving."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.replicas.conftest import TIMEOUT_S, StartService
from tests.support.configs import SMOLLM2_FILE, wait_until
from tests.support.llama import LlamaServer, tokens_predicted

ASK = {"model": "far", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[list[LlamaServer]]:
    servers = [LlamaServer(f"host-{i}", SMOLLM2_FILE, tmp_path, parallel=1, ctx_size=512) for i in range(2)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_both_hosts_serve_the_one_model(start_service: StartService, hosts: list[LlamaServer]) -> None:
    service = start_service({"far": {"runtime": "remote", "urls": [host.url for host in hosts], "parallel": 1}})
    before = [tokens_predicted(host.url) for host in hosts]
    with httpx.Client(base_url=service.url, timeout=120) as client, ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=ASK), range(4)))
    assert [a.status_code for a in answers] == [200] * 4
    assert all(tokens_predicted(host.url) > count for host, count in zip(hosts, before, strict=True))


def test_a_host_down_leaves_the_other_serving(start_service: StartService, hosts: list[LlamaServer]) -> None:
    service = start_service({"far": {"runtime": "remote", "urls": [host.url for host in hosts], "parallel": 1}})
    hosts[0].stop()
    with httpx.Client(base_url=service.url, timeout=120) as client:
        wait_until(lambda: client.get("/v1/models/far").json()["replicas"][0]["status"] == "failed", TIMEOUT_S)
        answers = [client.post("/v1/chat/completions", json=ASK).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
