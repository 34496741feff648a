"""Traces of real requests, as an OTLP/HTTP collector receives them: the span tree, its parent
links, the caller's trace continued, and the GenAI attributes - for a plain request, a
stream, a fallback, a request that loads its model and a critique, on real llama-servers."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.router.observability.conftest import (
    BROKEN,
    TAPPED,
    CallerContext,
    Trace,
    chat_body,
    trace_id_of,
    trace_of,
)
from tests.support.api import model_card, unload
from tests.support.busy import endless_chat
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, smollm2, wait_until
from tests.support.otlp import OtlpReceiver
from tests.support.service import ServiceProcess
from tests.support.sse import SSEStream, post_sse
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

#: A critique's stages: SmolLM2 (the primary) generates and revises, gemma (the critic) critiques.
STAGES = (("generator", SMOLLM2_ID), ("critic", GEMMA_ID), ("reviser", SMOLLM2_ID))
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


@dataclass(frozen=True)
class Answered:
    caller: CallerContext
    response: httpx.Response
    trace: Trace


@dataclass(frozen=True)
class Streamed:
    caller: CallerContext
    stream: SSEStream
    trace: Trace


def answered(client: httpx.Client, receiver: OtlpReceiver, body: dict[str, object]) -> Answered:
    caller = CallerContext.new()
    response = client.post("/v1/chat/completions", json=body, headers=caller.headers)
    assert response.status_code == 200, response.text
    return Answered(caller, response, trace_of(receiver, caller.trace_id))


@pytest.fixture(scope="module")
def plain(traced_client: httpx.Client, receiver: OtlpReceiver) -> Answered:
    return answered(traced_client, receiver, chat_body(top_p=0.9))


@pytest.fixture(scope="module")
def streamed(traced_router: ServiceProcess, receiver: OtlpReceiver) -> Streamed:
    caller = CallerContext.new()
    body = chat_body(max_tokens=4, stream=True, stream_options={"include_usage": True})
    stream = post_sse(f"{traced_router.url}/v1/chat/completions", body, headers=caller.headers)
    assert stream.status == 200, stream.data
    return Streamed(caller, stream, trace_of(receiver, caller.trace_id))


@pytest.fixture(scope="module")
def fallback(traced_client: httpx.Client, receiver: OtlpReceiver) -> Answered:
    return answered(traced_client, receiver, chat_body(BROKEN))


@pytest.fixture(scope="module")
def loaded(traced_router: ServiceProcess, traced_client: httpx.Client, receiver: OtlpReceiver) -> Answered:
    """A request to gemma, unloaded first: the request waits for its load."""
    assert unload(traced_router, GEMMA_ID).status_code == 200
    return answered(traced_client, receiver, chat_body(GEMMA_ID))


@pytest.fixture(scope="module")
def critique(traced_router: ServiceProcess, traced_client: httpx.Client, receiver: OtlpReceiver) -> Answered:
    """A critique (SmolLM2 generates and revises, gemma critiques), gemma unloaded first."""
    assert unload(traced_router, GEMMA_ID).status_code == 200
    body = {key: value for key, value in chat_body().items() if key != "model"}  # the primary generates
    return answered(traced_client, receiver, {**body, "orchestration_mode": "critique"})


@pytest.fixture(scope="module")
def streamed_critique(traced_router: ServiceProcess, receiver: OtlpReceiver) -> Streamed:
    """A streamed critique: its final stage (the reviser) is streamed to the client as it runs."""
    caller = CallerContext.new()
    body = {key: value for key, value in chat_body().items() if key != "model"}
    stream = post_sse(
        f"{traced_router.url}/v1/chat/completions",
        {**body, "orchestration_mode": "critique", "stream": True},
        headers=caller.headers,
    )
    assert stream.status == 200, stream.data
    return Streamed(caller, stream, trace_of(receiver, caller.trace_id))


# --------------------------------------------------------------------------- a plain request


def test_the_server_span_continues_the_callers_trace(plain: Answered) -> None:
    server = plain.trace.server
    assert (server.trace_id, server.parent_span_id) == (plain.caller.trace_id, plain.caller.span_id)


def test_the_response_carries_the_server_spans_traceparent(plain: Answered) -> None:
    assert plain.response.headers["traceparent"] == f"00-{plain.caller.trace_id}-{plain.trace.server.span_id}-01"


def test_the_server_span_is_named_for_the_operation_and_the_model(plain: Answered) -> None:
    assert plain.trace.server.name == f"chat {SMOLLM2_ID}"


def test_the_server_span_carries_what_the_client_asked_for(plain: Answered) -> None:
    attributes = plain.trace.server.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == SMOLLM2_ID
    assert attributes["gen_ai.request.max_tokens"] == 3
    assert attributes["gen_ai.request.temperature"] == 0.0
    assert attributes["gen_ai.request.top_p"] == 0.9


def test_the_server_span_carries_what_the_model_answered(plain: Answered) -> None:
    attributes = plain.trace.server.attributes
    body = plain.response.json()
    assert attributes["gen_ai.response.model"] == SMOLLM2_ID
    assert attributes["gen_ai.usage.input_tokens"] == body["usage"]["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == body["usage"]["completion_tokens"]
    assert attributes["gen_ai.response.finish_reasons"] == [body["choices"][0]["finish_reason"]]
    assert attributes["http.response.status_code"] == 200
    assert attributes["inference.request_id"] == plain.response.headers["x-request-id"]


def test_admission_and_the_upstream_call_are_children_of_the_server_span(plain: Answered) -> None:
    children = plain.trace.children(plain.trace.server)
    assert [(span.name, span.kind) for span in children] == [
        (f"admission {SMOLLM2_ID}", "INTERNAL"),
        (f"chat {SMOLLM2_ID}", "CLIENT"),
    ]
    assert len(plain.trace.spans) == 3


def test_the_admission_span_has_the_queue_position_and_priority(plain: Answered) -> None:
    attributes = plain.trace.one(f"admission {SMOLLM2_ID}").attributes
    assert (attributes["inference.queue.position"], attributes["inference.priority"]) == (0, 2)


def test_the_client_span_names_the_runtime_it_called(plain: Answered, traced_router: ServiceProcess) -> None:
    (call,) = [span for span in plain.trace.spans if span.kind == "CLIENT"]
    attributes = call.attributes
    assert (attributes["server.address"], attributes["server.port"]) == (
        "127.0.0.1",
        model_card(traced_router, SMOLLM2_ID)["port"],
    )
    assert attributes["gen_ai.provider.name"] == "llama.cpp"
    assert attributes["http.response.status_code"] == 200
    assert attributes["gen_ai.usage.output_tokens"] == plain.response.json()["usage"]["completion_tokens"]


def test_the_upstream_receives_the_client_spans_traceparent(
    traced_client: httpx.Client, receiver: OtlpReceiver, tap: Wiretap
) -> None:
    response = traced_client.post("/v1/chat/completions", json=chat_body(TAPPED))
    assert response.status_code == 200, response.text
    trace = trace_of(receiver, trace_id_of(response))
    (call,) = [span for span in trace.spans if span.kind == "CLIENT"]
    sent = [request.headers.get("traceparent", "") for request in tap.requests()]
    assert [call.trace_id, call.span_id] in [traceparent.split("-")[1:3] for traceparent in sent]


def test_the_access_line_names_the_trace(plain: Answered, traced_router: ServiceProcess) -> None:
    request_id = plain.response.headers["x-request-id"]
    (line,) = [line for line in traced_router.log().splitlines() if f"[{request_id}]" in line and " 200 " in line]
    assert f"trace_id={plain.caller.trace_id}" in line


def test_the_latency_histogram_has_the_trace_as_its_exemplar(traced_client: httpx.Client) -> None:
    response = traced_client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200, response.text

    metrics = traced_client.get("/metrics", headers=OPENMETRICS)

    assert metrics.headers["content-type"].startswith("application/openmetrics-text")
    bucket = rf'^inference_request_duration_seconds_bucket\{{[^}}]*model="{SMOLLM2_ID}"[^}}]*\}} \S+ # \{{([^}}]*)\}}'
    assert any(f'trace_id="{trace_id_of(response)}"' in found for found in re.findall(bucket, metrics.text, re.M))


# --------------------------------------------------------------------------- a stream


def test_a_stream_is_one_server_span_with_a_first_token_event(streamed: Streamed) -> None:
    server = streamed.trace.server
    first_token = server.event("first_token")
    assert server.start_ns < first_token.time_ns < server.end_ns
    assert first_token.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert server.attributes["gen_ai.request.stream"] is True


def test_a_stream_has_no_span_per_chunk(streamed: Streamed) -> None:
    assert len(streamed.stream.chunks) > 3
    assert sorted(span.name for span in streamed.trace.spans) == sorted(
        [f"chat {SMOLLM2_ID}", f"admission {SMOLLM2_ID}", f"chat {SMOLLM2_ID}"]
    )


def test_a_streams_spans_carry_its_finish_reason_and_usage(streamed: Streamed) -> None:
    reasons = [c["choices"][0]["finish_reason"] for c in streamed.stream.chunks if c["choices"]]
    usage = next(chunk["usage"] for chunk in streamed.stream.chunks if chunk.get("usage"))
    for span in (streamed.trace.server, *(span for span in streamed.trace.spans if span.kind == "CLIENT")):
        assert span.attributes["gen_ai.response.finish_reasons"] == [reasons[-1]]
        assert span.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


def test_the_ttft_histogram_has_the_streams_trace_as_its_exemplar(
    streamed: Streamed, traced_client: httpx.Client
) -> None:
    metrics = traced_client.get("/metrics", headers=OPENMETRICS).text
    bucket = (
        rf'^inference_time_to_first_token_seconds_bucket\{{[^}}]*model="{SMOLLM2_ID}"[^}}]*\}} \S+ # \{{([^}}]*)\}}'
    )
    assert any(f'trace_id="{streamed.caller.trace_id}"' in found for found in re.findall(bucket, metrics, re.M))


# --------------------------------------------------------------------------- a fallback


def test_a_fallback_is_the_response_model_of_the_server_span(fallback: Answered) -> None:
    attributes = fallback.trace.server.attributes
    assert (attributes["gen_ai.request.model"], attributes["gen_ai.response.model"]) == (BROKEN, SMOLLM2_ID)


def test_a_fallback_trace_shows_the_refusal_then_the_fallbacks_call(fallback: Answered) -> None:
    children = fallback.trace.children(fallback.trace.server)
    assert [span.name for span in children] == [
        f"admission {BROKEN}",
        f"load {BROKEN}",
        f"admission {SMOLLM2_ID}",
        f"chat {SMOLLM2_ID}",
    ]


def test_the_refused_models_load_span_records_the_error(fallback: Answered) -> None:
    load = fallback.trace.one(f"load {BROKEN}")
    assert load.status == "ERROR"
    assert load.event("exception").attributes["exception.type"].endswith("ModelUnavailable")


# --------------------------------------------------------------------------- a request that loads its model


def test_a_request_that_loads_its_model_has_a_load_span(loaded: Answered) -> None:
    load = loaded.trace.one(f"load {GEMMA_ID}")
    assert load.parent_span_id == loaded.trace.server.span_id
    assert load.attributes["inference.model.runtime"] == "llamacpp"
    assert load.attributes["inference.model.state"] == "unloaded"
    assert load.attributes["inference.load.seconds"] > 0


def test_the_load_comes_after_admission_and_before_the_call(loaded: Answered) -> None:
    admission, load, call = loaded.trace.children(loaded.trace.server)
    assert [admission.name, load.name, call.name] == [f"admission {GEMMA_ID}", f"load {GEMMA_ID}", f"chat {GEMMA_ID}"]
    assert admission.end_ns <= load.start_ns and load.end_ns <= call.start_ns


# --------------------------------------------------------------------------- a critique


def test_a_critique_is_one_trace_of_its_load_and_stages(critique: Answered) -> None:
    children = critique.trace.children(critique.trace.server)
    assert [span.name for span in children] == [f"load {GEMMA_ID}", *(f"{role} {model}" for role, model in STAGES)]


def test_each_stage_span_names_its_role_model_and_round(critique: Answered) -> None:
    for role, model in STAGES:
        attributes = critique.trace.one(f"{role} {model}").attributes
        assert (attributes["inference.stage.role"], attributes["inference.stage.model"]) == (role, model)
        assert attributes["inference.stage.round"] == 1


def test_each_stage_holds_its_admission_and_its_models_call(critique: Answered) -> None:
    for role, model in STAGES:
        stage = critique.trace.one(f"{role} {model}")
        children = critique.trace.children(stage)
        assert [(span.name, span.kind) for span in children] == [
            (f"admission {model}", "INTERNAL"),
            (f"chat {model}", "CLIENT"),
        ]


def test_the_critique_server_span_has_the_mode_and_the_total_usage(critique: Answered) -> None:
    attributes = critique.trace.server.attributes
    usage = critique.response.json()["usage"]
    assert attributes["inference.orchestration.mode"] == "critique"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]


def test_a_streamed_critiques_stages_hold_their_admission_and_call_as_a_non_streamed_ones_do(
    streamed_critique: Streamed,
) -> None:
    """The final stage, relayed to the client as it runs, has its stage span like the others."""
    trace = streamed_critique.trace
    stages = [span.name for span in trace.children(trace.server) if not span.name.startswith("load ")]
    assert stages == [f"{role} {model}" for role, model in STAGES]
    for role, model in STAGES:
        assert [(span.name, span.kind) for span in trace.children(trace.one(f"{role} {model}"))] == [
            (f"admission {model}", "INTERNAL"),
            (f"chat {model}", "CLIENT"),
        ]


def test_a_streamed_final_stage_whose_client_left_while_it_queued_has_its_span_ended(
    traced_router: ServiceProcess, receiver: OtlpReceiver
) -> None:
    """The client hangs up while the final stage waits for a slot: its stage span is ended (exported)
    like any stage's, holding the admission it waited in - not left open for good."""
    caller = CallerContext.new()
    body = {**chat_body(), "orchestration_mode": "single", "stream": True}
    url = f"{traced_router.url}/v1/chat/completions"
    with contextlib.ExitStack() as held:
        for _ in range(smollm2()["parallel"]):  # every slot of the model busy
            busy = held.enter_context(httpx.stream("POST", url, json=endless_chat(SMOLLM2_ID, 900), timeout=60))
            assert busy.status_code == 200
            lines = busy.iter_lines()  # kept referenced: a discarded iterator closes the stream
            held.callback(lines.close)
            assert next(lines).startswith("data: ")
        wait_until(lambda: model_card(traced_router, SMOLLM2_ID)["in_flight"] == smollm2()["parallel"], timeout_s=30)
        with httpx.stream("POST", url, json=body, headers=caller.headers, timeout=60) as waiting:
            assert waiting.status_code == 200  # a stream's headers go out before its stages run
            wait_until(lambda: model_card(traced_router, SMOLLM2_ID)["queue_depth"] == 1, timeout_s=30)
    trace = trace_of(receiver, caller.trace_id)
    stage = trace.one(f"generator {SMOLLM2_ID}")
    assert stage.parent_span_id == trace.server.span_id
    assert [span.name for span in trace.children(stage)] == [f"admission {SMOLLM2_ID}"]
