"""A stream that breaks mid-way is an error in its key's usage; a client that leaves mid-stream is not.

The model is a ``remote`` route to a llama-server started here, so a test can kill that server
(SIGKILL, by its pid) while a stream from it is under way: the runtime's fault, counted in
``errors`` for the key (the dispatcher's ``call_failed``). A client that closes its stream is
its own choice: the call counts as a request and not as an error.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.busy import endless_chat
from tests.support.configs import SMOLLM2_FILE, SMOLLM2_ID, wait_until, write_config
from tests.support.llama import LlamaServer
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote-smollm2"
KEYS = {
    "alice": {"key": "k-alice", "scopes": ["inference"]},
    "bob": {"key": "k-bob", "scopes": ["inference"]},
    "ops": {"key": "k-ops", "scopes": ["admin", "read"]},
}
#: Cannot end by itself before the test ends it (``ignore_eos``).
ENDLESS = endless_chat(REMOTE_ID)
OPS = {"Authorization": "Bearer k-ops"}
CHUNKS_BEFORE_THE_BREAK = 3
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = LlamaServer("upstream", SMOLLM2_FILE, tmp_path_factory.mktemp("upstream"), parallel=1, ctx_size=2048)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, upstream: LlamaServer) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("router")
    model = {"runtime": "remote", "url": upstream.url, "upstream_model": SMOLLM2_ID}
    # Probed twice a second once it failed: back to serving soon after its server is started again.
    remote = {"remote": {"health_interval_s": 0.5}}
    config = write_config(directory / "config.toml", {REMOTE_ID: model}, keys=KEYS, runtimes=remote)
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


@pytest.fixture
def serving(router: ServiceProcess, upstream: LlamaServer) -> ServiceProcess:
    """The router, its remote model serving - its llama-server started again if a test killed it."""
    if upstream.pid is None:
        upstream.start()
    wait_until(lambda: ops_get(router, f"/v1/models/{REMOTE_ID}")["status"] == "loaded", timeout_s=TIMEOUT_S)
    return router


def ops_get(router: ServiceProcess, path: str, **params: str) -> Any:
    response = httpx.get(f"{router.url}{path}", params=params, headers=OPS, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def usage_of(router: ServiceProcess, key: str) -> dict[str, Any] | None:
    """The key's ledger row for the remote model (this hour) once its call is counted, else None."""
    rows = ops_get(router, "/v1/usage", key=key, model=REMOTE_ID)["data"]
    return rows[-1] if rows and rows[-1]["requests"] else None


def read_chunks(lines: Iterator[str], count: int) -> None:
    """Read ``count`` token chunks of a stream: it is under way."""
    chunks = (line for line in lines if line.startswith('data: {"choices"'))
    for _ in range(count):
        next(chunks)


def test_a_stream_the_runtime_breaks_mid_way_is_an_error_for_its_key(
    serving: ServiceProcess, upstream: LlamaServer
) -> None:
    headers = {"Authorization": "Bearer k-alice"}
    with httpx.stream("POST", f"{serving.url}/v1/chat/completions", json=ENDLESS, headers=headers, timeout=60) as reply:
        assert reply.status_code == 200
        lines = reply.iter_lines()
        read_chunks(lines, CHUNKS_BEFORE_THE_BREAK)
        assert upstream.pid is not None
        os.kill(upstream.pid, signal.SIGKILL)
        for _ in lines:  # to its end: the router ends the stream once the runtime is gone
            pass

    row = wait_until(lambda: usage_of(serving, "alice"), timeout_s=TIMEOUT_S)
    assert (row["requests"], row["errors"]) == (1, 1), row


def test_a_client_that_leaves_mid_stream_is_not_an_error(serving: ServiceProcess) -> None:
    headers = {"Authorization": "Bearer k-bob"}
    with httpx.stream("POST", f"{serving.url}/v1/chat/completions", json=ENDLESS, headers=headers, timeout=60) as reply:
        assert reply.status_code == 200
        read_chunks(reply.iter_lines(), CHUNKS_BEFORE_THE_BREAK)
    # Leaving the block closed the connection mid-stream.

    row = wait_until(lambda: usage_of(serving, "bob"), timeout_s=TIMEOUT_S)
    assert (row["requests"], row["errors"]) == (1, 0), row
