"""Sampling values the router checks itself: 422 naming the field, and nothing sent upstream."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest

from tests.integration.router.conftest import TAPPED_ID
from tests.support.service import ServiceProcess
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

BAD_VALUES = [("temperature", -0.5), ("max_tokens", 0), ("max_completion_tokens", -1), ("n", 0)]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_a_bad_chat_value_is_a_422_naming_the_field_and_never_reaches_the_runtime(
    client: httpx.Client, tap: Wiretap, field: str, value: float
) -> None:
    marker = uuid.uuid4().hex
    body = {"model": TAPPED_ID, "messages": [{"role": "user", "content": marker}], field: value}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"]
    assert not [request for request in tap.requests() if marker.encode() in request.body]


@pytest.mark.parametrize(("field", "value"), [("temperature", -1), ("max_tokens", 0), ("n", 0)])
def test_a_bad_completion_value_is_a_422_naming_the_field(client: httpx.Client, field: str, value: float) -> None:
    response = client.post("/v1/completions", json={"model": TAPPED_ID, "prompt": "x", field: value})
    assert response.status_code == 422 and response.json()["error"]["param"] == field


def test_the_boundaries_are_accepted(client: httpx.Client) -> None:
    response = client.post(
        "/v1/completions", json={"model": TAPPED_ID, "prompt": "x", "temperature": 0, "max_tokens": 1, "n": 1}
    )
    assert response.status_code == 200, response.text


def test_the_openai_sdk_raises_unprocessable_entity(router: ServiceProcess) -> None:
    with (
        openai.OpenAI(base_url=router.url + "/v1", api_key="unused", max_retries=0) as sdk,
        pytest.raises(openai.UnprocessableEntityError) as caught,
    ):
        sdk.chat.completions.create(model=TAPPED_ID, messages=[{"role": "user", "content": "hi"}], temperature=-1)
    assert caught.value.body["param"] == "temperature"  # type: ignore[index]
