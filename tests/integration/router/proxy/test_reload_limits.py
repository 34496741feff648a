"""A config reload's new admission limits reach the requests already waiting (issue 23, defect 7).

The model is a ``remote`` one in front of a llama-server started here with four slots: its
``parallel`` is only the router's cap, so a reload changes it in place, the process
untouched. Which requests run at once is read from that llama-server's own ``/slots``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import SMOLLM2_FILE, SMOLLM2_ID, wait_until, write_config
from tests.support.llama import LlamaServer
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

MODEL_ID = "capped"
UPSTREAM_SLOTS = 4
#: Long enough to still be generating, four at a time on a crowded machine, when /slots is read.
STREAM_TOKENS = 400
OpenStreams = Callable[[int], None]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """SmolLM2 on a llama-server of its own with four slots (1024 context tokens each)."""
    directory = tmp_path_factory.mktemp("upstream")
    server = LlamaServer("upstream", SMOLLM2_FILE, directory, parallel=UPSTREAM_SLOTS, ctx_size=UPSTREAM_SLOTS * 1024)
    server.start()
    yield server
    server.stop()


def capped(upstream: LlamaServer, parallel: int) -> dict[str, dict[str, Any]]:
    return {MODEL_ID: {"runtime": "remote", "url": upstream.url, "upstream_model": SMOLLM2_ID, "parallel": parallel}}


@pytest.fixture
def service(tmp_path: Path, upstream: LlamaServer) -> Iterator[tuple[ServiceProcess, Path]]:
    """A router capping the model at one request at a time, and its config file (to reload)."""
    config = write_config(tmp_path / "config.toml", capped(upstream, parallel=1), queue_size=8)
    with running_service(config, tmp_path / "logs", wait_ready=True) as started:
        yield started, config


@pytest.fixture
def streams(service: tuple[ServiceProcess, Path]) -> Iterator[OpenStreams]:
    """Open ``count`` long streams to the model at once; they are all closed after the test."""
    url, stop = service[0].url, threading.Event()
    pool = ThreadPoolExecutor(max_workers=8)
    body = {
        "model": MODEL_ID,
        "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": STREAM_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }

    def hold() -> None:
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as response:
            for _ in response.iter_lines():
                if stop.is_set():
                    return

    def open_streams(count: int) -> None:
        for _ in range(count):
            pool.submit(hold)

    yield open_streams
    stop.set()
    pool.shutdown(wait=True)


def _in_flight_and_queued(service: ServiceProcess) -> tuple[float, float]:
    metrics = httpx.get(service.url + "/metrics", timeout=10).text
    in_flight = sample(metrics, "inference_in_flight", model=MODEL_ID) or 0
    return in_flight, sample(metrics, "inference_queue_depth", model=MODEL_ID) or 0


def _generating(upstream: LlamaServer) -> int:
    """Requests the llama-server is processing right now, by its own account."""
    return sum(slot["is_processing"] for slot in httpx.get(upstream.url + "/slots", timeout=10).json())


def test_a_reload_raising_parallel_runs_the_waiting_requests_at_once(
    service: tuple[ServiceProcess, Path], streams: OpenStreams, upstream: LlamaServer
) -> None:
    router, config = service
    streams(6)
    wait_until(lambda: _in_flight_and_queued(router) == (1, 5), timeout_s=60)

    write_config(config, capped(upstream, parallel=4), queue_size=8)
    answer = httpx.post(router.url + "/admin/reload", timeout=300).json()

    # Three of the five waiting start at once, beside the one running: nobody had to finish first.
    assert wait_until(lambda: _generating(upstream) == UPSTREAM_SLOTS, timeout_s=30)
    assert (answer["updated"], answer["restarted"]) == ([MODEL_ID], []), answer  # the process untouched
