"""Values llama-server misreads or answers 500: the router answers 4xx first, with the field named.

Found by a hostile probe: ``top_logprobs = 49152`` (a 94 MB reply, the child grew by 1.3 GB),
``max_tokens`` wrapping in 32 bits (4294967300 generated 4 tokens), ``true`` read as 1, a
malformed ``tools`` entry or a negative token id answered 500 - which the OpenAI SDK retried.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import TAPPED_ID, chat_body
from tests.support.configs import SMOLLM2_ID
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration


def assert_refused(response: httpx.Response, status: int, param: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_top_logprobs_beyond_20_is_a_400_that_never_reaches_the_runtime(client: httpx.Client, tap: Wiretap) -> None:
    marker = uuid.uuid4().hex
    body = chat_body(model=TAPPED_ID, logprobs=True, top_logprobs=49152, messages=[{"role": "user", "content": marker}])
    assert_refused(client.post("/v1/chat/completions", json=body), 400, "top_logprobs")
    assert not [request for request in tap.requests() if marker.encode() in request.body]


def test_max_tokens_beyond_the_context_is_a_400_not_a_wrapped_count(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(max_tokens=4294967300))
    assert_refused(response, 400, "max_tokens")
    assert "2048" in response.json()["error"]["message"]  # the model's ctx_size


@pytest.mark.parametrize("value", [1e12, True, "8"], ids=["float", "bool", "string"])
def test_max_tokens_that_is_not_an_integer_is_a_422(client: httpx.Client, value: Any) -> None:
    assert_refused(client.post("/v1/chat/completions", json=chat_body(max_tokens=value)), 422, "max_tokens")


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/apply-template"])
def test_a_malformed_tool_is_a_400_not_a_500(client: httpx.Client, path: str) -> None:
    assert_refused(client.post(path, json=chat_body(tools=[{"x": 1}])), 400, "tools[0].type")


def test_a_negative_token_id_is_a_400_not_a_500(client: httpx.Client) -> None:
    assert_refused(client.post("/detokenize", json={"model": SMOLLM2_ID, "tokens": [-1]}), 400, "tokens")


def test_a_token_id_past_the_vocabulary_is_a_400_from_the_runtimes_500(client: httpx.Client) -> None:
    """Only the runtime knows its vocabulary: its 500 (a C++ range check) is the client's fault, so a 400."""
    response = client.post("/detokenize", json={"model": SMOLLM2_ID, "tokens": [999999999]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_value"


def test_an_ollama_num_predict_beyond_32_bits_is_a_400_that_never_reaches_the_runtime(
    client: httpx.Client, tap: Wiretap
) -> None:
    marker = uuid.uuid4().hex
    body = {
        "model": TAPPED_ID,
        "stream": False,
        "messages": [{"role": "user", "content": marker}],
        "options": {"num_predict": 4294967300},
    }
    response = client.post("/api/chat", json=body)
    assert response.status_code == 400, response.text
    assert "4294967300" in response.json()["error"]  # Ollama's envelope: the message as a string
    assert not [request for request in tap.requests() if marker.encode() in request.body]


def test_an_orchestrated_max_tokens_beyond_32_bits_is_a_400_that_never_reaches_the_runtime(
    client: httpx.Client, tap: Wiretap
) -> None:
    marker = uuid.uuid4().hex
    body = chat_body(
        model=TAPPED_ID,
        orchestration_mode="single",
        max_tokens=4294967300,
        messages=[{"role": "user", "content": marker}],
    )
    assert_refused(client.post("/v1/chat/completions", json=body), 400, "max_tokens")
    assert not [request for request in tap.requests() if marker.encode() in request.body]
