"""Top-level options seen over HTTP: custom ``model_prefixes``, ``log_buffer_lines`` and a
model's ``queue_timeout_s``."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body, child_url
from tests.support.api import child_headers
from tests.support.busy import request_in_flight
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.llama import tokens_predicted
from tests.support.service import ServiceProcess
from tests.support.timing import Budget

pytestmark = pytest.mark.integration

PREFIX = "acme/"
LOG_LINES = 10  # the smallest allowed; llama-server prints far more while starting
QUEUE_TIMEOUT_S = 0.5
#: The router's share of a queue timeout: the timer firing and the answer going out.
TIMEOUT_ANSWER_S = 1.0


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """One slot, a short queue timeout, a custom prefix list and a small log buffer."""
    model = smollm2(preload=True, parallel=1, ctx_size=2048, queue_timeout_s=QUEUE_TIMEOUT_S)
    return start_router({SMOLLM2_ID: model}, wait_ready=True, model_prefixes=[PREFIX], log_buffer_lines=LOG_LINES)


def test_custom_prefix_is_stripped_and_reaches_the_model(router: ServiceProcess) -> None:
    child, auth = child_url(router, SMOLLM2_ID), child_headers(router, SMOLLM2_ID)
    before = tokens_predicted(child, auth)
    response = httpx.post(
        router.url + "/v1/chat/completions", json=chat_body(model=f"{PREFIX}{SMOLLM2_ID}", max_tokens=2), timeout=60
    )
    assert response.status_code == 200, response.text
    assert tokens_predicted(child, auth) - before == response.json()["usage"]["completion_tokens"]


def test_custom_prefixes_replace_the_default_ones(router: ServiceProcess) -> None:
    response = httpx.post(
        router.url + "/v1/chat/completions", json=chat_body(model=f"inference:{SMOLLM2_ID}"), timeout=60
    )
    assert response.status_code == 404


def test_logs_endpoint_keeps_the_last_log_buffer_lines(router: ServiceProcess) -> None:
    lines = httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}/logs", timeout=10).json()["lines"]
    assert len(lines) == LOG_LINES


def test_request_queued_past_queue_timeout_gets_503_queue_timeout_with_retry_after(router: ServiceProcess) -> None:
    answer = Budget(fixed_s=QUEUE_TIMEOUT_S, cpu_s=TIMEOUT_ANSWER_S)  # before the work: its own load must not loosen it
    with request_in_flight(router, SMOLLM2_ID):  # the only slot is taken: the next request queues
        started = time.monotonic()
        response = httpx.post(router.url + "/v1/chat/completions", json=chat_body(max_tokens=1), timeout=60)
        waited = time.monotonic() - started
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "queue_timeout"
    assert int(response.headers["retry-after"]) > 0
    assert QUEUE_TIMEOUT_S <= waited < answer.seconds, f"answered after {waited:.2f}s (bound {answer})"
