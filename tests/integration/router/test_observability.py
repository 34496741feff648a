"""Health, readiness, request ids and the Prometheus metrics operators rely on."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.prometheus import sample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def metrics(client: httpx.Client) -> str:
    """/metrics after one plain and one streamed request with usage."""
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    streamed = client.post("/v1/chat/completions", json=chat_body(stream=True, stream_options={"include_usage": True}))
    assert streamed.status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.text


def _sample(metrics: str, name: str, **labels: str) -> float:
    value = sample(metrics, name, **labels)
    assert value is not None, f"no {name} sample with {labels}"
    return value


def test_health_is_200(client: httpx.Client) -> None:
    assert client.get("/health").status_code == 200


def test_ready_is_200_when_a_model_is_loaded(client: httpx.Client) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert SMOLLM2_ID in response.json()["loaded_models"]


def test_metrics_count_requests_by_model_endpoint_and_status(metrics: str) -> None:
    assert _sample(metrics, "inference_requests_total", model=SMOLLM2_ID, endpoint="chat/completions", status="200") >= 2


def test_metrics_have_latency_and_ttft_histograms(metrics: str) -> None:
    assert _sample(metrics, "inference_request_duration_seconds_count", model=SMOLLM2_ID, endpoint="chat/completions") >= 2
    assert _sample(metrics, "inference_time_to_first_token_seconds_count", model=SMOLLM2_ID) >= 1


def test_metrics_count_prompt_and_completion_tokens(metrics: str) -> None:
    assert _sample(metrics, "inference_prompt_tokens_total", model=SMOLLM2_ID) > 0
    assert _sample(metrics, "inference_completion_tokens_total", model=SMOLLM2_ID) >= 8  # two requests of 4


def test_metrics_show_model_state_and_process_rss(metrics: str) -> None:
    assert _sample(metrics, "inference_model_state", model=SMOLLM2_ID, state="loaded") == 1
    assert _sample(metrics, "inference_process_rss_bytes", model=SMOLLM2_ID) > 10 * 2**20


def test_given_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(max_tokens=1), headers={"X-Request-ID": "trace-abc-123"})
    assert response.headers["x-request-id"] == "trace-abc-123"


@pytest.mark.parametrize("path", ["/health", "/v1/models", "/v1/nowhere"])
def test_missing_request_id_is_generated_and_returned(client: httpx.Client, path: str) -> None:
    first, second = client.get(path).headers.get("x-request-id"), client.get(path).headers.get("x-request-id")
    assert first and second and first != second
