"""Streaming chat completions: framing, headers, equivalence with the non-streamed answer,
and a disconnecting client releasing its llama-server slot."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.router.conftest import chat_body, child_url
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, SSEStream, post_sse, sse_lines
from tests.support.timing import budget_s

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def streamed(router: ServiceProcess) -> SSEStream:
    """One streamed answer with usage requested, read to the end."""
    body = chat_body(max_tokens=12, messages=QUESTION, stream=True, stream_options={"include_usage": True})
    return post_sse(router.url + "/v1/chat/completions", body)


def test_streamed_deltas_concatenate_to_the_non_streamed_answer(client: httpx.Client, streamed: SSEStream) -> None:
    whole = client.post("/v1/chat/completions", json=chat_body(max_tokens=12, messages=QUESTION))
    assert whole.status_code == 200, whole.text
    assert streamed.content == whole.json()["choices"][0]["message"]["content"]
    assert streamed.content


def test_stream_response_has_event_stream_headers(streamed: SSEStream) -> None:
    assert streamed.status == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.headers["cache-control"] == "no-cache"
    assert streamed.headers["x-accel-buffering"] == "no"


def test_every_chunk_carries_the_same_id(streamed: SSEStream) -> None:
    ids = {chunk["id"] for chunk in streamed.chunks}
    assert len(ids) == 1 and ids != {None}


def test_last_chunk_with_choices_carries_the_finish_reason(streamed: SSEStream) -> None:
    with_choices = [chunk for chunk in streamed.chunks if chunk.get("choices")]
    reasons = [chunk["choices"][0].get("finish_reason") for chunk in with_choices]
    assert reasons[-1] == "length"
    assert not any(reasons[:-1])


def test_include_usage_adds_a_usage_chunk(streamed: SSEStream) -> None:
    usage = [chunk["usage"] for chunk in streamed.chunks if chunk.get("usage")]
    assert len(usage) == 1
    assert usage[0]["completion_tokens"] == 12


def test_stream_ends_with_exactly_one_done(streamed: SSEStream) -> None:
    assert streamed.data[-1] == DONE
    assert streamed.data.count(DONE) == 1


def test_client_disconnect_after_first_chunk_frees_the_slot(router: ServiceProcess) -> None:
    """Within 1 s of the client hanging up, the router has let go of the upstream and
    llama-server's own /slots shows the slot idle. (llama-server notices the closed socket
    when it writes its next token, so on an oversubscribed machine the bound stretches
    with the load, see tests/support/timing.py.)"""
    slots_url = child_url(router, SMOLLM2_ID) + "/slots"
    auth = child_headers(router, SMOLLM2_ID)
    body = chat_body(max_tokens=400, stream=True, ignore_eos=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        lines = sse_lines(response)  # kept referenced: a discarded iterator closes the connection
        # llama-server announces the role before a slot picks the task up: wait for a token.
        next(payload for kind, payload in lines if kind == "data" and '"content":"' in payload)
        assert any(slot["is_processing"] for slot in httpx.get(slots_url, headers=auth).json())  # still generating
    disconnected = time.monotonic()
    budget = budget_s(1.0)
    wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 0, timeout_s=budget, interval_s=0.02)
    wait_until(lambda: not any(slot["is_processing"] for slot in httpx.get(slots_url, headers=auth).json()), timeout_s=budget, interval_s=0.02)
    freed = time.monotonic() - disconnected
    assert freed < budget, f"slot freed {freed:.2f}s after the disconnect (budget {budget:.1f}s)"
