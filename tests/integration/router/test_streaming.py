"""Streaming chat completions: framing, headers, equivalence with the non-streamed answer,
and a disconnecting client releasing its llama-server slot."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import chat_body, child_url
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.llama import tokens_predicted
from tests.support.prometheus import metrics_once, sample
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, SSEStream, post_sse, sse_lines
from tests.support.timing import measured

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Name three colours."}]
#: The length of the generation a client abandons after its first tokens.
ABANDONED_MAX_TOKENS = 400


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


def _content_tokens(lines: Iterator[tuple[str, str]]) -> Iterator[float]:
    """The arrival time of each streamed content token."""
    for kind, payload in lines:
        if kind == "data" and '"content":"' in payload:
            yield time.monotonic()


def test_client_disconnect_stops_generation_and_frees_the_slot_at_once(router: ServiceProcess) -> None:
    """A 400-token generation whose client hangs up after the first tokens: llama-server's own
    token counter shows it stopped right there (not after finishing by itself), and its /slots
    shows the slot idle within 1 s plus two token times (llama-server notices the closed socket
    when it writes its next token; the token time is measured on this very stream)."""
    child = child_url(router, SMOLLM2_ID)
    predicted_before = tokens_predicted(child)
    body = chat_body(max_tokens=ABANDONED_MAX_TOKENS, stream=True, ignore_eos=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        tokens = _content_tokens(sse_lines(response))  # kept referenced: a discarded iterator closes the connection
        # llama-server announces the role before a slot picks the task up: wait for two tokens.
        first, second = next(tokens), next(tokens)
        assert any(slot["is_processing"] for slot in httpx.get(child + "/slots").json())  # still generating
    disconnected = time.monotonic()
    budget = measured(1.0, 2 * (second - first))
    wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 0, timeout_s=60, interval_s=0.02)
    wait_until(lambda: not any(slot["is_processing"] for slot in httpx.get(child + "/slots").json()), timeout_s=60, interval_s=0.02)
    freed = time.monotonic() - disconnected
    generated = tokens_predicted(child) - predicted_before
    assert generated < ABANDONED_MAX_TOKENS / 4, f"{generated:.0f} of {ABANDONED_MAX_TOKENS} tokens generated after a disconnect"
    assert freed < budget.seconds, f"slot freed {freed:.2f}s after the disconnect (budget {budget})"


def test_client_disconnect_is_counted_as_status_499(router: ServiceProcess) -> None:
    labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions", "status": "499"}
    before = sample(httpx.get(router.url + "/metrics").text, "inference_requests_total", **labels) or 0.0
    body = chat_body(max_tokens=ABANDONED_MAX_TOKENS, stream=True, ignore_eos=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        tokens = _content_tokens(sse_lines(response))
        next(tokens)
    after = metrics_once(lambda: httpx.get(router.url + "/metrics").text, "inference_requests_total", before + 1, **labels)
    assert sample(after, "inference_requests_total", **labels) == before + 1
