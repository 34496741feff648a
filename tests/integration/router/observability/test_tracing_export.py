"""How traces leave the router: never holding up a request when the collector is down or slow (spans
are dropped and counted instead), never carrying a prompt unless the operator opted in, and
the load span's eviction victims and the JSON access line on routers of their own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.router.observability.conftest import (
    HI,
    REMOTE,
    RemoteRouter,
    chat_body,
    trace_id_of,
    trace_of,
    tracing_env,
)
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.otlp import OtlpReceiver, otlp_receiver
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, free_port, running_service

pytestmark = pytest.mark.integration

#: A collector that takes ten minutes to answer holds the exporter (one span in hand) for the whole test,
#: while a queue of two spans fills: the spans of a few requests are enough to overflow it.
SLOW_COLLECTOR = {
    "OTEL_BSP_MAX_QUEUE_SIZE": "2",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "60",
}
SPANS_PER_REQUEST = 3  # SERVER, admission, CLIENT
DROPPED = "inference_trace_spans_dropped_total"


def dropped(service: ServiceProcess, reason: str) -> float:
    return sample(httpx.get(f"{service.url}/metrics", timeout=30).text, DROPPED, reason=reason) or 0.0


def ask(service: ServiceProcess, content: str = "Say hi.") -> httpx.Response:
    body = {**chat_body(REMOTE), "messages": [{"role": "user", "content": content}]}
    response = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
def held_receiver() -> Iterator[OtlpReceiver]:
    """A collector that accepts connections and answers no export until the test ends (a slow one)."""
    with otlp_receiver() as receiver:
        receiver.open.clear()
        yield receiver


def test_requests_are_answered_while_the_collector_holds_the_export(
    remote_router: RemoteRouter, held_receiver: OtlpReceiver
) -> None:
    with remote_router(tracing_env(held_receiver, **SLOW_COLLECTOR)) as service:
        ask(service)
        wait_until(lambda: held_receiver.exports_waiting, timeout_s=30)  # the exporter is stuck from now on

        answers = [ask(service) for _ in range(3)]

        assert [answer.status_code for answer in answers] == [200, 200, 200]
        assert held_receiver.exports_waiting == 1, "the first export is still unanswered"


def test_spans_beyond_the_queue_of_a_slow_collector_are_dropped_and_counted(
    remote_router: RemoteRouter, held_receiver: OtlpReceiver
) -> None:
    requests = 4
    with remote_router(tracing_env(held_receiver, **SLOW_COLLECTOR)) as service:
        for _ in range(requests):
            ask(service)

        # One span in the exporter's hands, two queued: every other one is dropped (the last ends a moment late).
        expected = requests * SPANS_PER_REQUEST - 3
        wait_until(lambda: dropped(service, "queue_full") >= expected, timeout_s=30)
        assert dropped(service, "queue_full") == expected


def test_a_collector_that_is_down_costs_requests_nothing_and_the_lost_spans_are_counted(
    remote_router: RemoteRouter,
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    with remote_router({**env, "OTEL_BSP_SCHEDULE_DELAY": "50"}) as service:
        ask(service)

        wait_until(lambda: dropped(service, "export_failed") >= SPANS_PER_REQUEST, timeout_s=30)
        assert dropped(service, "export_failed") == SPANS_PER_REQUEST


def test_no_prompt_or_completion_is_exported_by_default(remote_router: RemoteRouter) -> None:
    marker = f"marker-{secrets.token_hex(8)}"
    with otlp_receiver() as receiver, remote_router(tracing_env(receiver)) as service:
        response = ask(service, f"Repeat after me: {marker}")
        trace = trace_of(receiver, trace_id_of(response))

    assert not any(key.startswith(("gen_ai.input", "gen_ai.output")) for s in trace.spans for key in s.attributes)
    assert all(marker.encode() not in body for body in receiver.bodies)


def test_prompt_and_completion_are_exported_when_the_operator_opts_in(remote_router: RemoteRouter) -> None:
    marker = f"marker-{secrets.token_hex(8)}"
    with otlp_receiver() as receiver:
        capture = tracing_env(receiver, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
        with remote_router(capture) as service:
            response = ask(service, f"Repeat after me: {marker}")
            trace = trace_of(receiver, trace_id_of(response))

    (call,) = [span for span in trace.spans if span.kind == "CLIENT"]
    (prompt,) = json.loads(call.attributes["gen_ai.input.messages"])
    assert prompt == {"role": "user", "parts": [{"type": "text", "content": f"Repeat after me: {marker}"}]}
    (answer,) = json.loads(call.attributes["gen_ai.output.messages"])
    choice = response.json()["choices"][0]
    assert answer["parts"] == [{"type": "text", "content": choice["message"]["content"]}]
    assert answer["finish_reason"] == choice["finish_reason"]


def test_the_json_access_line_names_the_trace(remote_router: RemoteRouter) -> None:
    with otlp_receiver() as receiver, remote_router(tracing_env(receiver), log_format="json") as service:
        response = ask(service)
        log = service.log()

    request_id = response.headers["x-request-id"]
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (access,) = [line for line in lines if line["request_id"] == request_id and line["logger"].endswith("access")]
    assert access["trace_id"] == trace_id_of(response)


def test_a_load_span_lists_the_models_evicted_to_make_room(tmp_path: Path) -> None:
    models = {SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma()}
    config = write_config(tmp_path / "config.toml", models, max_loaded_models=1)
    with (
        otlp_receiver() as receiver,
        running_service(config, tmp_path / "logs", env=tracing_env(receiver), wait_ready=True) as service,
    ):
        body = {"model": GEMMA_ID, "messages": HI, "max_tokens": 2}
        response = httpx.post(f"{service.url}/v1/chat/completions", json=body, timeout=300)
        assert response.status_code == 200, response.text
        trace = trace_of(receiver, trace_id_of(response))

    load = trace.one(f"load {GEMMA_ID}")
    assert load.attributes["inference.load.evicted"] == [SMOLLM2_ID]
