"""A model's request filters on its trace: the CLIENT span carries the request as it went upstream
and names what the filters changed; the SERVER span keeps what the client asked for."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.observability.conftest import HI, CallerContext, trace_of, tracing_env
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, write_config
from tests.support.otlp import OtlpReceiver
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

FILTERED = "smollm2-filtered"
FILTERS = {"defaults": {"temperature": 0.6}, "overrides": {"max_tokens": 2}, "strip": ["top_k"]}


@pytest.fixture(scope="module")
def filtered_router(
    tmp_path_factory: pytest.TempPathFactory, traced_router: ServiceProcess, receiver: OtlpReceiver
) -> Iterator[ServiceProcess]:
    """A traced router whose one model is the traced router's SmolLM2 llama-server, with FILTERS."""
    directory = tmp_path_factory.mktemp("filtered")
    port = model_card(traced_router, SMOLLM2_ID)["port"]
    key = child_headers(traced_router, SMOLLM2_ID)["Authorization"].removeprefix("Bearer ")
    model = {
        "runtime": "remote",
        "url": f"http://127.0.0.1:{port}",
        "api_key": key,
        "upstream_model": SMOLLM2_ID,
        "filters": FILTERS,
    }
    config = write_config(directory / "config.toml", {FILTERED: model})
    with running_service(config, directory / "logs", env=tracing_env(receiver), wait_ready=True) as service:
        yield service


def test_the_client_span_carries_the_filtered_request_and_names_the_changes(
    filtered_router: ServiceProcess, receiver: OtlpReceiver
) -> None:
    caller = CallerContext.new()
    body = {"model": FILTERED, "messages": HI, "max_tokens": 20, "top_k": 5}
    response = httpx.post(f"{filtered_router.url}/v1/chat/completions", json=body, headers=caller.headers, timeout=120)
    assert response.status_code == 200, response.text
    trace = trace_of(receiver, caller.trace_id)

    (call,) = [span for span in trace.spans if span.kind == "CLIENT"]
    assert call.attributes["inference.request.filtered"] == ["temperature=0.6", "max_tokens=2", "-top_k"]
    assert (call.attributes["gen_ai.request.max_tokens"], call.attributes["gen_ai.request.temperature"]) == (2, 0.6)
    assert "gen_ai.request.top_k" not in call.attributes
    asked = trace.server.attributes  # what the client asked for
    assert (asked["gen_ai.request.max_tokens"], asked["gen_ai.request.top_k"]) == (20, 5)
