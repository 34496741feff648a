"""Scheduling under tight capacity, against real llama-servers: requests wait for room instead of
getting 507, and alternating traffic for two models does not swap on every request."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import TIMEOUT_S, chat, load, model_card
from tests.support.busy import request_in_flight
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

TWO_MODELS = {SMOLLM2_ID: smollm2(), GEMMA_ID: gemma()}
#: The service's deadline for a queued request (its default, stated here): it answers by then, 200 or 503
#: ``queue_timeout``. How long a request waits for the other model's turn, a swap and a load depends on
#: the machine's speed, so the client does not judge that: it waits for the service's answer.
QUEUE_TIMEOUT_S = 300.0


def model_loads(service: ServiceProcess) -> int:
    """Sum of ``inference_model_loads_total`` over all models."""
    text = httpx.get(f"{service.url}/metrics", timeout=30).text
    return int(sum(float(v) for v in re.findall(r'^inference_model_loads_total\{model="[^"]+"\} (\S+)$', text, re.M)))


def alternating(service: ServiceProcess, requests: int, concurrency: int) -> list[httpx.Response]:
    """``requests`` chats alternating SmolLM2, gemma, SmolLM2 ... with ``concurrency`` in the air at once."""
    order = [(SMOLLM2_ID, GEMMA_ID)[number % 2] for number in range(requests)]
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(lambda model_id: chat(service, model_id, timeout_s=QUEUE_TIMEOUT_S + TIMEOUT_S), order))


def test_requests_for_a_model_whose_room_is_busy_wait_and_are_served(start_service: StartService) -> None:
    # The measurement: six concurrent requests alternating between two models gave three 507s.
    service = start_service(TWO_MODELS, max_loaded_models=1, queue_timeout_s=QUEUE_TIMEOUT_S)

    responses = alternating(service, requests=6, concurrency=6)

    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses if r.status_code != 200]


def test_alternating_traffic_for_two_models_in_one_slot_does_not_thrash(start_service: StartService) -> None:
    # Only the queues decide when a model gives up its room: no turn ends by the clock (swap_max_wait_s
    # outlasts every request's wait). With the 10 s default a slow machine serves fewer requests per
    # turn and so swaps more; that rule has its own tests (tests/unit/supervisor/test_capacity.py).
    service = start_service(
        TWO_MODELS, max_loaded_models=1, queue_timeout_s=QUEUE_TIMEOUT_S, swap_max_wait_s=QUEUE_TIMEOUT_S
    )

    responses = alternating(service, requests=40, concurrency=8)

    assert [r.status_code for r in responses] == [200] * 40, [r.text for r in responses if r.status_code != 200]
    loads = model_loads(service)
    assert 2 <= loads <= 10, loads  # a per-request swapper needs ~40


def test_load_waits_for_a_busy_models_room_then_succeeds(start_service: StartService) -> None:
    service = start_service(
        {SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1), GEMMA_ID: gemma()},
        max_loaded_models=1,
        swap_max_wait_s=60,
    )
    with ThreadPoolExecutor(1) as pool:
        with request_in_flight(service, SMOLLM2_ID):
            pending = pool.submit(load, service, GEMMA_ID)
            with pytest.raises(TimeoutError):
                pending.result(timeout=1.5)  # waiting, not 507
            assert model_card(service, SMOLLM2_ID)["status"] == "loaded"
        response = pending.result(timeout=60)

    assert response.status_code == 200, response.text
    assert (response.json()["status"], model_card(service, SMOLLM2_ID)["status"]) == ("loaded", "unloaded")


def test_a_request_that_waits_too_long_for_room_gets_503_queue_timeout_with_retry_after(
    start_service: StartService,
) -> None:
    service = start_service(
        {SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1), GEMMA_ID: gemma(queue_timeout_s=1)},
        max_loaded_models=1,
        swap_max_wait_s=60,
    )
    with request_in_flight(service, SMOLLM2_ID):
        response = chat(service, GEMMA_ID)

    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "queue_timeout"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_a_model_that_can_never_fit_gets_507_at_once(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2()}, max_loaded_models=0)

    response = chat(service, SMOLLM2_ID)

    assert response.status_code == 507, response.text
    assert "max_loaded_models = 0" in response.json()["error"]["message"]
