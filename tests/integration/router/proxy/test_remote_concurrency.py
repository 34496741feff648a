"""A runtime that schedules itself (here: another inference-service, as a ``remote`` model) gets
no router-side concurrency cap unless ``parallel`` is set."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

UPSTREAM_SLOTS = 4
OpenStreams = Callable[[str, int], None]


@pytest.fixture(scope="module")
def front(start_router: StartRouter) -> ServiceProcess:
    """A front router whose two remote models are a back router serving SmolLM2 with 4 slots."""
    back = start_router({SMOLLM2_ID: smollm2(preload=True, parallel=UPSTREAM_SLOTS, ctx_size=2048)}, wait_ready=True)
    remote = {"runtime": "remote", "url": back.url, "upstream_model": SMOLLM2_ID, "health_path": "/health/ready"}
    return start_router({"uncapped": remote, "capped": {**remote, "parallel": 2}})


def _in_flight_and_queued(service: ServiceProcess, model_id: str) -> tuple[float, float]:
    metrics = httpx.get(service.url + "/metrics", timeout=10).text
    return (
        sample(metrics, "inference_in_flight", model=model_id) or 0,
        sample(metrics, "inference_queue_depth", model=model_id) or 0,
    )


@pytest.fixture
def streams(front: ServiceProcess) -> Iterator[OpenStreams]:
    """Open ``count`` long streams to a model at once; they are all closed after the test."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=8)

    def hold(model_id: str) -> None:
        body = {
            "model": model_id,
            "messages": [{"role": "user", "content": "Count."}],
            "max_tokens": 300,
            "ignore_eos": True,
            "stream": True,
        }
        with httpx.stream("POST", front.url + "/v1/chat/completions", json=body, timeout=60) as response:
            for _ in response.iter_lines():
                if stop.is_set():
                    return

    def open_streams(model_id: str, count: int) -> None:
        for _ in range(count):
            pool.submit(hold, model_id)

    yield open_streams
    stop.set()
    pool.shutdown(wait=True)


def test_an_uncapped_remote_model_passes_every_request_through_at_once(
    front: ServiceProcess, streams: OpenStreams
) -> None:
    streams("uncapped", UPSTREAM_SLOTS)
    assert wait_until(lambda: _in_flight_and_queued(front, "uncapped") == (UPSTREAM_SLOTS, 0), timeout_s=20)


def test_parallel_caps_a_remote_model_and_queues_the_rest(front: ServiceProcess, streams: OpenStreams) -> None:
    streams("capped", UPSTREAM_SLOTS)
    assert wait_until(lambda: _in_flight_and_queued(front, "capped") == (2, 2), timeout_s=20)
