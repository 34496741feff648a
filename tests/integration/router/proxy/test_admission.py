"""Admission control under load: a bounded queue that sheds excess with 503 + Retry-After,
and a priority order that lets urgent work overtake."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

SERIAL_ID = "smollm2-serial"
PARALLEL, QUEUE_SIZE, BURST = 4, 8, 30


@dataclass
class Burst:
    responses: list[httpx.Response]
    max_queue_depth: float
    metrics_after: str


def queue_depth(metrics: str, model_id: str) -> float:
    return sample(metrics, "inference_queue_depth", model=model_id) or 0.0


def request_count(metrics: str, model_id: str, status: str) -> float:
    return (
        sample(metrics, "inference_requests_total", model=model_id, endpoint="chat/completions", status=status) or 0.0
    )


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    models = {
        SMOLLM2_ID: smollm2(preload=True, parallel=PARALLEL, queue_size=QUEUE_SIZE, ctx_size=2048),
        SERIAL_ID: smollm2(preload=True, parallel=1, queue_size=QUEUE_SIZE, ctx_size=4096),
    }
    return start_router(models, wait_ready=True)


@pytest.fixture(scope="module")
def burst(router: ServiceProcess) -> Burst:
    """30 simultaneous requests at a 4-slot, 8-deep model, with /metrics sampled meanwhile."""
    body = chat_body(
        max_tokens=48, ignore_eos=True
    )  # the slots stay busy while the burst lands, however slowly its threads start
    depths: list[float] = []
    done = threading.Event()

    def sample_depth(client: httpx.Client) -> None:
        while not done.wait(0.02):
            depths.append(queue_depth(client.get("/metrics").text, SMOLLM2_ID))

    with httpx.Client(base_url=router.url, timeout=120, limits=httpx.Limits(max_connections=BURST + 1)) as client:
        with ThreadPoolExecutor(max_workers=BURST + 1) as pool:
            sampler = pool.submit(sample_depth, client)
            try:
                futures = [pool.submit(client.post, "/v1/chat/completions", json=body) for _ in range(BURST)]
                responses = [future.result(timeout=120) for future in futures]  # a hung request fails here
            finally:
                done.set()  # whatever happened, the sampler stops and the pool can shut down
            sampler.result()
        return Burst(responses, max(depths, default=0.0), client.get("/metrics").text)


def test_burst_gets_only_200s_and_503s(burst: Burst) -> None:
    statuses = [response.status_code for response in burst.responses]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= PARALLEL + QUEUE_SIZE


def test_rejections_say_queue_full_with_retry_after(burst: Burst) -> None:
    rejected = [response for response in burst.responses if response.status_code == 503]
    for response in rejected:
        assert int(response.headers["retry-after"]) > 0
        assert response.json()["error"]["type"] == "queue_full"


def test_metrics_show_queue_depth_while_requests_wait(burst: Burst) -> None:
    assert burst.max_queue_depth >= 1
    assert queue_depth(burst.metrics_after, SMOLLM2_ID) == 0


def test_metrics_count_the_burst_by_status(burst: Burst) -> None:
    statuses = [response.status_code for response in burst.responses]
    assert request_count(burst.metrics_after, SMOLLM2_ID, "200") == statuses.count(200)
    assert request_count(burst.metrics_after, SMOLLM2_ID, "503") == statuses.count(503)


def test_priority_3_request_queued_last_is_served_before_priority_1(router: ServiceProcess) -> None:
    """On a 1-slot model held by a stream the test controls, queue two priority-1 requests,
    then a priority-3 one, then free the slot: the slot serves one request at a time, so
    finishing order is admission order."""
    finished: dict[str, float] = {}

    def send(name: str, priority: int) -> None:
        body = chat_body(model=SERIAL_ID, max_tokens=2, priority=priority)
        response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=120)
        assert response.status_code == 200, response.text
        finished[name] = time.monotonic()

    def depth() -> float:
        return queue_depth(httpx.get(router.url + "/metrics").text, SERIAL_ID)

    blocker_body = chat_body(model=SERIAL_ID, max_tokens=3500, ignore_eos=True, stream=True)  # ~30 s at best
    with ThreadPoolExecutor(max_workers=3) as pool:
        with httpx.stream("POST", router.url + "/v1/chat/completions", json=blocker_body, timeout=120) as blocker:
            lines = blocker.iter_lines()  # kept referenced: a discarded iterator closes the connection
            next(lines)  # admitted: the slot is now held until we hang up
            queued = [pool.submit(send, "low-1", 1), pool.submit(send, "low-2", 1)]
            wait_until(lambda: depth() == 2, timeout_s=10)
            queued.append(pool.submit(send, "high", 3))
            wait_until(lambda: depth() == 3, timeout_s=10)
        for future in queued:
            future.result(timeout=120)
    assert finished["high"] < min(finished["low-1"], finished["low-2"]), finished
