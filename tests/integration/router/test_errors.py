"""Every error the router returns is an OpenAI error envelope, with the right status."""

from __future__ import annotations

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


def _chunked(body: bytes, piece: int = 8192) -> Iterator[bytes]:
    """The body as a generator, so httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), piece):
        yield body[start:start + piece]


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_error_responses_use_the_openai_envelope(client: httpx.Client, case: tuple[str, str, dict[str, Any], int]) -> None:
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
