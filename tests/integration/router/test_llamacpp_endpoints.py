"""llama-server's own endpoints, routed by ``model``: tokenize, detokenize, apply-template, infill;
and a clear 400 for a runtime that does not serve one."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess
from tests.support.sse import post_sse

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


def test_infill_answers_and_streams_in_llama_servers_own_format(router: ServiceProcess, client: httpx.Client) -> None:
    body = {"model": SMOLLM2_ID, "input_prefix": "def add(a, b):\n    return ", "input_suffix": "\n", "n_predict": 3}
    response = client.post("/infill", json=body)
    assert response.status_code == 200, response.text
    assert "content" in response.json()
    stream = post_sse(router.url + "/infill", {**body, "stream": True})
    assert stream.status == 200
    assert json.loads(stream.data[-1])["stop"] is True  # ended by llama-server's last chunk ...
    assert "[DONE]" not in stream.data  # ... not by an OpenAI terminator


def test_a_non_streamable_endpoint_refuses_stream(client: httpx.Client) -> None:
    response = client.post("/tokenize", json={"model": SMOLLM2_ID, "content": "x", "stream": True})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "stream"


@pytest.fixture(scope="module")
def ollama_only(start_router: StartRouter) -> ServiceProcess:
    """A router whose one model is on an Ollama server (never reached: the router refuses first)."""
    return start_router({"qwen": {"runtime": "ollama", "ollama_model": "qwen2.5:0.5b"}},
                        runtimes={"ollama": {"url": "http://127.0.0.1:9"}})  # fmt: skip


@pytest.mark.parametrize("path", ["/tokenize", "/v1/rerank", "/v1/messages/count_tokens", "/infill"])
def test_an_ollama_model_gets_a_400_naming_the_unsupported_endpoint(ollama_only: ServiceProcess, path: str) -> None:
    response = httpx.post(ollama_only.url + path, json={"model": "qwen", "messages": HI, "content": "x"}, timeout=30)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "endpoint_not_supported" and path in error["message"] and "ollama" in error["message"]
