"""Streaming chat completions: framing, headers, equivalence with the non-streamed answer,
and a disconnecting client releasing its llama-server slot."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import chat_body, child_url
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.llama import tokens_predicted
from tests.support.prometheus import metrics_once, sample
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, SSEStream, post_sse, sse_lines

pytestmark = pytest.mark.integration

QUESTION = [{"role": "user", "content": "Name three colours."}]
#: The length of the generation a client abandons after its first tokens.
ABANDONED_MAX_TOKENS = 400


@pytest.fixture(scope="module")
def streamed(router: ServiceProcess) -> SSEStream:
    """One streamed answer with usage requested, read to the end."""
    body = chat_body(
        max_tokens=12, messages=QUESTION, stream=True, stream_options={"include_usage": True}, cache_prompt=False
    )
    return post_sse(router.url + "/v1/chat/completions", body)


def test_streamed_deltas_concatenate_to_the_non_streamed_answer(client: httpx.Client, streamed: SSEStream) -> None:
    # Both uncached: a prompt served from llama-server's cache evaluates its last token alone,
    # and logits from a different batch size are not bit-identical (a near-tie can flip).
    whole = client.post("/v1/chat/completions", json=chat_body(max_tokens=12, messages=QUESTION, cache_prompt=False))
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


def _content_tokens(lines: Iterator[tuple[str, str]]) -> Iterator[str]:
    """Each streamed data payload that carries content, as it arrives."""
    for kind, payload in lines:
        if kind == "data" and '"content":"' in payload:
            yield payload


def test_client_disconnect_releases_the_request_and_stops_llama_server_generating(router: ServiceProcess) -> None:
    """A 400-token generation whose client hangs up after its first tokens: the router lets go
    of it, and llama-server stops generating right there - its own token counter, flushed when
    the slot is released, shows a handful of tokens, not the 400 it would have produced by
    itself. The count, not the clock, is the proof: it scales with the machine's speed, where
    a wall-clock bound fails on a busy one (how soon /slots shows the slot idle took 2-20 s on
    an oversubscribed 2-core machine although no further token was generated). The router's
    own release time is compared with llama-server's in serving/test_abandoned_requests.py."""
    child = child_url(router, SMOLLM2_ID)
    auth = child_headers(router, SMOLLM2_ID)
    predicted_before = tokens_predicted(child, auth)
    body = chat_body(max_tokens=ABANDONED_MAX_TOKENS, stream=True, ignore_eos=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        tokens = _content_tokens(sse_lines(response))  # kept referenced: a discarded iterator closes the connection
        # llama-server announces the role before a slot picks the task up: wait for two tokens.
        next(tokens), next(tokens)
        assert any(
            slot["is_processing"] for slot in httpx.get(child + "/slots", headers=auth).json()
        )  # still generating
    wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 0, timeout_s=60, interval_s=0.02)
    wait_until(
        lambda: not any(slot["is_processing"] for slot in httpx.get(child + "/slots", headers=auth).json()),
        timeout_s=120,
        interval_s=0.05,
    )
    generated = tokens_predicted(child, auth) - predicted_before
    assert generated < ABANDONED_MAX_TOKENS / 4, (
        f"{generated:.0f} of {ABANDONED_MAX_TOKENS} tokens generated after a disconnect"
    )


def test_client_disconnect_is_counted_as_status_499(router: ServiceProcess) -> None:
    labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions", "status": "499"}
    before = sample(httpx.get(router.url + "/metrics").text, "inference_requests_total", **labels) or 0.0
    body = chat_body(max_tokens=ABANDONED_MAX_TOKENS, stream=True, ignore_eos=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, timeout=60) as response:
        tokens = _content_tokens(sse_lines(response))
        next(tokens)
    after = metrics_once(
        lambda: httpx.get(router.url + "/metrics").text, "inference_requests_total", before + 1, **labels
    )
    assert sample(after, "inference_requests_total", **labels) == before + 1
