"""Runtime answers that blame the request reach the client as 400 ``invalid_request_error``,
never as a 5xx the OpenAI SDK would retry - including through an orchestration."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.integration.router.conftest import TAPPED_ID, chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.prometheus import sample
from tests.support.sse import post_sse

pytestmark = pytest.mark.integration

# A 1x1 PNG: any image is refused by a model started without a multimodal projector.
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_MESSAGES = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": PIXEL}},
        ],
    }
]


def assert_invalid_request(response: httpx.Response, *, mentions: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert mentions in error["message"], error["message"]
    return error


@pytest.mark.parametrize("model", [SMOLLM2_ID, TAPPED_ID], ids=["llamacpp", "remote"])
def test_image_input_to_a_text_only_model_is_a_400(client: httpx.Client, model: str) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(model=model, messages=IMAGE_MESSAGES))
    assert_invalid_request(response, mentions="image input is not supported")


def test_streamed_image_input_to_a_text_only_model_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(messages=IMAGE_MESSAGES, stream=True))
    assert_invalid_request(response, mentions="image input is not supported")


def test_embeddings_on_a_local_model_without_embeddings_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/embeddings", json={"model": SMOLLM2_ID, "input": "hello"})
    error = assert_invalid_request(response, mentions="embeddings = true")
    assert error["param"] == "model"


def test_embeddings_refused_by_a_remote_runtime_is_a_400_with_its_message(client: httpx.Client) -> None:
    """The tapped route is a remote llama-server started without --embeddings: it answers 501."""
    response = client.post("/v1/embeddings", json={"model": TAPPED_ID, "input": "hello"})
    assert_invalid_request(response, mentions="does not support embeddings")


def test_orchestration_whose_only_stage_gets_a_client_error_returns_that_client_error(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(top_p="hot", orchestration_mode="single"))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["code"] != "orchestration_failed"


def test_streamed_orchestration_reports_the_client_error_in_band(router_url: str) -> None:
    stream = post_sse(
        router_url + "/v1/chat/completions", chat_body(top_p="hot", orchestration_mode="single", stream=True)
    )
    errors = [chunk["error"] for chunk in stream.chunks if "error" in chunk]
    assert errors and errors[0]["type"] == "invalid_request_error", stream.data


def test_the_openai_sdk_raises_bad_request_without_retrying(router_url: str, client: httpx.Client) -> None:
    def refused() -> float:
        labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions", "status": "400"}
        return sample(client.get("/metrics").text, "inference_requests_total", **labels) or 0.0

    before = refused()
    sdk = openai.OpenAI(base_url=router_url + "/v1", api_key="unused", max_retries=2)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.chat.completions.create(model=SMOLLM2_ID, messages=IMAGE_MESSAGES, max_tokens=4)  # type: ignore[arg-type]
    assert "image input is not supported" in str(raised.value)
    assert refused() - before == 1  # one request: a 5xx would have been sent three times


@pytest.fixture
def router_url(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")
