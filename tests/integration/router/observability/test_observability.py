"""Health, readiness, request ids and the Prometheus metrics operators rely on."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.integration.router.conftest import chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.prometheus import metrics_once, sample
from tests.support.service import ServiceProcess
from tests.support.sse import post_sse

pytestmark = pytest.mark.integration


@dataclass
class Traffic:
    """/metrics read just before and just after one plain and one streamed request, and their usage."""

    before: str
    after: str
    usages: list[dict[str, int]]

    def increase(self, name: str, **labels: str) -> float:
        """How much one sample grew across the two requests (a sample absent before counts as 0)."""
        return increase(self.before, self.after, name, **labels)


def increase(before: str, after: str, name: str, **labels: str) -> float:
    """How much one sample grew from ``before`` to ``after`` (a sample absent before counts as 0)."""
    value = sample(after, name, **labels)
    assert value is not None, f"no {name} sample with {labels}"
    return value - (sample(before, name, **labels) or 0.0)


@pytest.fixture(scope="module")
def traffic(router: ServiceProcess, client: httpx.Client) -> Traffic:
    """Exact increases, not thresholds: earlier modules already sent requests to this shared router."""
    before = client.get("/metrics")
    assert before.status_code == 200
    plain = client.post("/v1/chat/completions", json=chat_body())
    assert plain.status_code == 200
    streamed = post_sse(
        f"{router.url}/v1/chat/completions", chat_body(stream=True, stream_options={"include_usage": True})
    )
    assert streamed.status == 200
    usage = next(chunk["usage"] for chunk in streamed.chunks if chunk.get("usage"))
    requests = {"model": SMOLLM2_ID, "endpoint": "chat/completions", "status": "200"}
    counted_before = sample(before.text, "inference_requests_total", **requests) or 0.0
    after = metrics_once(
        lambda: client.get("/metrics").text, "inference_requests_total", counted_before + 2, **requests
    )
    return Traffic(before.text, after, [plain.json()["usage"], usage])


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


def test_metrics_count_each_request_by_model_endpoint_and_status(traffic: Traffic) -> None:
    assert (
        traffic.increase("inference_requests_total", model=SMOLLM2_ID, endpoint="chat/completions", status="200") == 2
    )


def test_metrics_observe_each_request_in_the_latency_histogram(traffic: Traffic) -> None:
    assert (
        traffic.increase("inference_request_duration_seconds_count", model=SMOLLM2_ID, endpoint="chat/completions") == 2
    )


def test_a_request_the_runtime_refuses_is_timed_as_well_as_counted(client: httpx.Client) -> None:
    labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions"}
    before = client.get("/metrics").text
    refused = client.post("/v1/chat/completions", json=chat_body(top_p="hot"))
    assert refused.status_code == 400, refused.text
    after = client.get("/metrics").text
    assert increase(before, after, "inference_requests_total", status="400", **labels) == 1
    assert increase(before, after, "inference_request_duration_seconds_count", **labels) == 1


def test_metrics_observe_the_streamed_request_in_the_ttft_histogram(traffic: Traffic) -> None:
    assert traffic.increase("inference_time_to_first_token_seconds_count", model=SMOLLM2_ID) == 1


def test_metrics_count_the_prompt_and_completion_tokens_the_model_reported(traffic: Traffic) -> None:
    assert traffic.increase("inference_prompt_tokens_total", model=SMOLLM2_ID) == sum(
        u["prompt_tokens"] for u in traffic.usages
    )
    assert traffic.increase("inference_completion_tokens_total", model=SMOLLM2_ID) == sum(
        u["completion_tokens"] for u in traffic.usages
    )


def test_metrics_show_model_state_and_process_rss(traffic: Traffic) -> None:
    assert _sample(traffic.after, "inference_model_state", model=SMOLLM2_ID, state="loaded") == 1
    assert _sample(traffic.after, "inference_process_rss_bytes", model=SMOLLM2_ID) > 10 * 2**20


def test_given_request_id_is_echoed(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=1), headers={"X-Request-ID": "trace-abc-123"}
    )
    assert response.headers["x-request-id"] == "trace-abc-123"


@pytest.mark.parametrize("path", ["/health", "/v1/models", "/v1/nowhere"])
def test_missing_request_id_is_generated_and_returned(client: httpx.Client, path: str) -> None:
    first, second = client.get(path).headers.get("x-request-id"), client.get(path).headers.get("x-request-id")
    assert first and second and first != second
