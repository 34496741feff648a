"""The supervisor's refusals get one answer whichever endpoint met them: a proxied request,
``POST /v1/models/{id}/load`` or ``/upstream``.

No model ever runs here: SmolLM2 can never fit (``max_loaded_models = 0``) and the remote
model's server is a closed port, so it is ``failed`` from its start-up probe on.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

NEVER_FITS = SMOLLM2_ID
UNAVAILABLE = "unreachable"
TIMEOUT_S = 60.0

Endpoint = Callable[[ServiceProcess, str], httpx.Response]


def chat_completion(service: ServiceProcess, model_id: str) -> httpx.Response:
    return httpx.post(f"{service.url}/v1/chat/completions", json=chat_body(model=model_id), timeout=TIMEOUT_S)


def load(service: ServiceProcess, model_id: str) -> httpx.Response:
    return httpx.post(f"{service.url}/v1/models/{model_id}/load", timeout=TIMEOUT_S)


def upstream(service: ServiceProcess, model_id: str) -> httpx.Response:
    return httpx.post(f"{service.url}/upstream/{model_id}/v1/chat/completions", json=chat_body(), timeout=TIMEOUT_S)


ENDPOINTS = {"chat_completion": chat_completion, "load": load, "upstream": upstream}


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    return start_router(
        {NEVER_FITS: smollm2(), UNAVAILABLE: {"runtime": "remote", "url": "http://127.0.0.1:9"}}, max_loaded_models=0
    )


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_a_model_that_can_never_fit_is_a_507_at_every_endpoint(router: ServiceProcess, endpoint: Endpoint) -> None:
    response = endpoint(router, NEVER_FITS)
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("insufficient_capacity", "insufficient_capacity")
    assert "max_loaded_models = 0" in error["message"]


@pytest.mark.parametrize("endpoint", ENDPOINTS.values(), ids=ENDPOINTS.keys())
def test_an_unavailable_model_is_a_503_model_unavailable_with_retry_after_at_every_endpoint(
    router: ServiceProcess, endpoint: Endpoint
) -> None:
    response = endpoint(router, UNAVAILABLE)
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("model_unavailable", "model_unavailable")
    assert UNAVAILABLE in error["message"]
    assert response.headers["Retry-After"] == "5"
