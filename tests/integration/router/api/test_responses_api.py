"""OpenAI's Responses API through the router, with the OpenAI SDK's ``responses.create``, against llama-server."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def test_a_response_carries_output_text(sdk: openai.OpenAI) -> None:
    response = sdk.responses.create(model="smol", input="Say hi.", max_output_tokens=4, temperature=0)
    assert response.object == "response"
    assert response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0


def test_a_streamed_response_yields_deltas_then_completed(sdk: openai.OpenAI) -> None:
    events = list(
        sdk.responses.create(model=SMOLLM2_ID, input="Say hi.", max_output_tokens=4, temperature=0, stream=True)
    )
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "".join(deltas)


def test_the_stream_keeps_event_lines_and_has_no_done(router: ServiceProcess) -> None:
    body = {"model": SMOLLM2_ID, "input": "Say hi.", "max_output_tokens": 4, "stream": True}
    with httpx.stream("POST", router.url + "/v1/responses", json=body, timeout=120) as response:
        assert response.status_code == 200
        raw = response.read().decode()
    names = [line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event: ")]
    assert names[0] == "response.created" and names[-1] == "response.completed"
    assert "[DONE]" not in raw


def test_an_unknown_model_raises_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="no-such-model", input="hi", max_output_tokens=4)
