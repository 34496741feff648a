"""Anthropic's Messages API through the router, with the official ``anthropic`` SDK, against llama-server."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import httpx
import pytest

from tests.integration.router.conftest import HI, child_url
from tests.support.api import child_headers
from tests.support.configs import SMOLLM2_ID
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sdk(router: ServiceProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=router.url, api_key="unused", timeout=120.0, max_retries=0) as client:
        yield client


def test_a_message_comes_back_as_an_anthropic_message(sdk: anthropic.Anthropic) -> None:
    message = sdk.messages.create(model="smol", messages=HI, max_tokens=4)
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens > 0


def test_a_streamed_message_yields_text_deltas_and_a_final_message(sdk: anthropic.Anthropic) -> None:
    # temperature 0: a sampled answer may end on its own before 4 tokens (stop_reason end_turn)
    with sdk.messages.stream(model=SMOLLM2_ID, messages=HI, max_tokens=4, extra_body={"temperature": 0}) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason == "max_tokens"


def _event_names(
    base_url: str, body: dict[str, object], headers: dict[str, str] | None = None
) -> tuple[list[str], str]:
    with httpx.stream("POST", base_url + "/v1/messages", json=body, headers=headers, timeout=120) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    return [line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event: ")], raw


def test_the_stream_keeps_event_lines_and_ends_with_message_stop_not_done(router: ServiceProcess) -> None:
    """The router relays llama-server's events as they are. (llama-server sends message_start
    with the first token's text: a sampled first token it holds back - a partial UTF-8
    character - leaves the stream without one. Temperature 0 keeps the answer fixed, and no
    prompt cache: a cached prompt's logits are not bit-identical.)"""
    body = {
        "model": SMOLLM2_ID,
        "messages": HI,
        "max_tokens": 4,
        "stream": True,
        "temperature": 0,
        "cache_prompt": False,
    }
    events, raw = _event_names(router.url, body)
    direct, _ = _event_names(child_url(router, SMOLLM2_ID), body, child_headers(router, SMOLLM2_ID))
    assert events == direct
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events
    assert "[DONE]" not in raw


def test_count_tokens_answers_with_input_tokens(sdk: anthropic.Anthropic) -> None:
    assert sdk.messages.count_tokens(model=SMOLLM2_ID, messages=HI).input_tokens > 0


def test_an_unknown_model_raises_the_sdks_not_found_error(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        sdk.messages.create(model="no-such-model", messages=HI, max_tokens=4)
    assert caught.value.body["type"] == "error" and "no-such-model" in caught.value.body["error"]["message"]


def test_messages_are_counted_in_metrics_with_their_tokens(router: ServiceProcess, sdk: anthropic.Anthropic) -> None:
    def counters() -> tuple[float, float]:
        metrics = httpx.get(router.url + "/metrics", timeout=10).text
        requests = sample(metrics, "inference_requests_total", model=SMOLLM2_ID, endpoint="messages", status="200")
        return requests or 0, sample(metrics, "inference_completion_tokens_total", model=SMOLLM2_ID) or 0

    requests_before, tokens_before = counters()
    message = sdk.messages.create(model=SMOLLM2_ID, messages=HI, max_tokens=2)
    requests_after, tokens_after = counters()
    assert requests_after == requests_before + 1
    assert tokens_after - tokens_before >= message.usage.output_tokens > 0


def _bad_message(router: ServiceProcess, stream: bool) -> httpx.Response:
    # top_k is not checked by the router (max_tokens is): llama-server refuses the string itself.
    body = {"model": SMOLLM2_ID, "messages": HI, "max_tokens": 4, "top_k": "x", "stream": stream}
    return httpx.post(router.url + "/v1/messages", json=body, timeout=120)


def test_an_error_before_the_stream_starts_has_the_same_anthropic_body_as_unstreamed(router: ServiceProcess) -> None:
    """The runtime refuses the request before any event: the streamed request's answer is the
    very error the non-streamed one gets, with Anthropic's top-level ``"type": "error"``."""
    streamed, unstreamed = _bad_message(router, stream=True), _bad_message(router, stream=False)
    assert (streamed.status_code, unstreamed.status_code) == (400, 400), (streamed.text, unstreamed.text)
    assert streamed.json()["type"] == "error"
    assert streamed.json() == unstreamed.json()


def test_the_sdk_raises_its_bad_request_error_for_a_stream_refused_before_it_starts(sdk: anthropic.Anthropic) -> None:
    with (
        pytest.raises(anthropic.BadRequestError) as caught,
        sdk.messages.stream(model=SMOLLM2_ID, messages=HI, max_tokens=4, extra_body={"top_k": "x"}) as stream,
    ):
        stream.until_done()
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "error"
