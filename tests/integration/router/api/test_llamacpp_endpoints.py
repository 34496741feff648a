"""llama-server's own endpoints, routed by ``model``: tokenize, detokenize, apply-template, infill;
and a clear 400 for a runtime that does not serve one."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter, child_url
from tests.support.api import child_headers
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def test_tokenize_and_detokenize_round_trip(client: httpx.Client) -> None:
    tokens = client.post("/tokenize", json={"model": "smol", "content": "Hello world"})
    assert tokens.status_code == 200, tokens.text
    ids = tokens.json()["tokens"]
    assert ids and all(isinstance(token, int) for token in ids)
    text = client.post("/detokenize", json={"model": SMOLLM2_ID, "tokens": ids})
    assert text.status_code == 200, text.text
    assert text.json()["content"].strip() == "Hello world"


def test_apply_template_renders_the_models_chat_template(client: httpx.Client) -> None:
    response = client.post("/apply-template", json={"model": SMOLLM2_ID, "messages": HI})
    assert response.status_code == 200, response.text
    assert "Say hi." in response.json()["prompt"] and "<|im_start|>" in response.json()["prompt"]


def test_infill_reaches_llama_server_and_its_answer_comes_back(router: ServiceProcess, client: httpx.Client) -> None:
    # Neither tiny model has fill-in-the-middle tokens, so llama-server's own refusal is the answer
    # to relay; the stream framing of a real /infill is covered in tests/unit/router/proxy/test_sse_protocols.py.
    body = {"model": SMOLLM2_ID, "input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 3}
    direct = httpx.post(
        child_url(router, SMOLLM2_ID) + "/infill", json=body, headers=child_headers(router, SMOLLM2_ID), timeout=60
    )
    routed = client.post("/infill", json=body)
    # llama-server says 501; the request is what it cannot serve, so the router answers 400 (see Failure behaviour).
    assert (routed.status_code, direct.status_code) == (400, 501), routed.text
    assert routed.json()["error"]["type"] == "invalid_request_error"
    assert routed.json()["error"]["message"] == direct.json()["error"]["message"]
    assert "Infill is not supported by this model" in routed.json()["error"]["message"]


def test_a_non_streamable_endpoint_refuses_stream(client: httpx.Client) -> None:
    response = client.post("/tokenize", json={"model": SMOLLM2_ID, "content": "x", "stream": True})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


@pytest.fixture(scope="module")
def ollama_only(start_router: StartRouter) -> ServiceProcess:
    """A router whose one model is on an Ollama server (never reached: the router refuses first)."""
    return start_router(
        {"qwen": {"runtime": "ollama", "ollama_model": "qwen2.5:0.5b"}},
        runtimes={"ollama": {"url": "http://127.0.0.1:9"}},
    )


@pytest.mark.parametrize("path", ["/tokenize", "/v1/rerank", "/v1/messages/count_tokens", "/infill"])
def test_an_ollama_model_gets_a_400_naming_the_unsupported_endpoint(ollama_only: ServiceProcess, path: str) -> None:
    response = httpx.post(ollama_only.url + path, json={"model": "qwen", "messages": HI, "content": "x"}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "endpoint_not_supported" and path in error["message"] and "ollama" in error["message"]
