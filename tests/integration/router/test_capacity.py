"""Loading through the API: unknown ids, readiness, and refusal when capacity is exhausted."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body, wait_loaded
from tests.support.api import load, unload
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.service import ServiceProcess
from tests.support.sse import sse_lines

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """Two models, room for one, nothing preloaded."""
    return start_router({SMOLLM2_ID: smollm2(ctx_size=4096), GEMMA_ID: gemma()}, max_loaded_models=1)


@pytest.fixture
def smollm2_busy(router: ServiceProcess) -> Iterator[None]:
    """SmolLM2 loaded and serving a long stream for the duration of the test."""
    assert load(router, SMOLLM2_ID).status_code == 200
    body = chat_body(max_tokens=3500, ignore_eos=True, stream=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        lines = sse_lines(response)  # kept referenced: a discarded iterator closes the connection
        next(lines)
        yield


def test_loading_an_unknown_model_is_404(router: ServiceProcess) -> None:
    response = load(router, "no-such-model")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_ready_is_503_with_a_reason_until_a_model_is_loaded(router: ServiceProcess) -> None:
    for model_id in (SMOLLM2_ID, GEMMA_ID):
        assert unload(router, model_id).status_code == 200
    not_ready = httpx.get(router.url + "/health/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["reason"]
    assert load(router, SMOLLM2_ID).status_code == 200
    assert httpx.get(router.url + "/health/ready").status_code == 200


def test_loading_a_second_model_while_the_only_slot_is_busy_is_507(router: ServiceProcess, smollm2_busy: None) -> None:
    response = load(router, GEMMA_ID)
    assert response.status_code == 507, response.text
    assert response.json()["error"]["type"] == "insufficient_capacity"
    assert wait_loaded(router, SMOLLM2_ID)["in_flight"] == 1  # the busy model was not evicted
