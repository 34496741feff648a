"""Every error the router returns is an OpenAI error envelope, with the right status."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import HI, MAX_BODY_BYTES
from tests.support.configs import SMOLLM2_ID

pytestmark = pytest.mark.integration

ERROR_CASES: dict[str, tuple[str, str, dict[str, Any], int]] = {
    "unknown-model": ("POST", "/v1/chat/completions", {"json": {"model": "nope", "messages": HI}}, 404),
    "missing-messages": ("POST", "/v1/chat/completions", {"json": {"model": SMOLLM2_ID}}, 422),
    "empty-messages": ("POST", "/v1/chat/completions", {"json": {"model": SMOLLM2_ID, "messages": []}}, 422),
    "invalid-json": ("POST", "/v1/chat/completions", {"content": b"{not json"}, 400),
    "too-large": ("POST", "/v1/chat/completions", {"content": b" " * (MAX_BODY_BYTES + 1)}, 413),
    "unknown-route": ("GET", "/v1/nowhere", {}, 404),
    "wrong-method": ("GET", "/v1/chat/completions", {}, 405),
    "unknown-model-card": ("GET", "/v1/models/nope", {}, 404),
    "unknown-model-load": ("POST", "/v1/models/nope/load", {}, 404),
}


#: A lone surrogate: valid in a JSON string (``"\udfff"``), not encodable as UTF-8.
UNENCODABLE = "\udfff"
UNENCODABLE_MODEL_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": UNENCODABLE, "messages": HI}),
    "completions": ("/v1/completions", {"model": UNENCODABLE, "prompt": "x"}),
    "embeddings": ("/v1/embeddings", {"model": UNENCODABLE, "input": "x"}),
    "responses": ("/v1/responses", {"model": UNENCODABLE, "input": "x"}),
    "messages": ("/v1/messages", {"model": UNENCODABLE, "max_tokens": 1, "messages": HI}),
    "orchestration": ("/v1/chat/completions", {"messages": HI, "orchestration": {"models": [UNENCODABLE]}}),
}


def _chunked(body: bytes, piece: int = 8192) -> Iterator[bytes]:
    """The body as a generator, so httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), piece):
        yield body[start : start + piece]


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_responses_use_the_openai_envelope(
    client: httpx.Client, case: tuple[str, str, dict[str, Any], int]
) -> None:
    method, path, kwargs, status = case
    response = client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]


def test_missing_messages_names_the_messages_param(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"model": SMOLLM2_ID})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "messages"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_max_body_bytes_is_rejected_with_413(client: httpx.Client, framing: str) -> None:
    body = b'{"messages": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    content = body if framing == "content-length" else _chunked(body)
    response = client.post("/v1/chat/completions", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("case", UNENCODABLE_MODEL_CASES.values(), ids=UNENCODABLE_MODEL_CASES.keys())
def test_an_unencodable_model_name_is_a_404_that_quotes_it(
    client: httpx.Client, case: tuple[str, dict[str, Any]]
) -> None:
    path, body = case
    response = client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and UNENCODABLE in error["message"], error


def test_the_router_log_answers_after_logging_an_unencodable_model_name(client: httpx.Client) -> None:
    path, body = UNENCODABLE_MODEL_CASES["completions"]
    client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})
    for params in ({}, {"tail": 20}):
        response = client.get("/v1/logs", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["lines"]
