"""``POST /v1/completions`` and ``/v1/embeddings`` end to end: answered by the model's own llama-server."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, child_url
from tests.support.api import child_headers
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.llama import tokens_predicted
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, post_sse

pytestmark = pytest.mark.integration

EMBEDDER_ID = "smollm2-embeddings"
PROMPT = {"model": SMOLLM2_ID, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "seed": 7}
INPUTS = ["the cat sat on the mat", "quarterly revenue grew"]


@pytest.fixture(scope="module")
def embedder(start_router: StartRouter) -> ServiceProcess:
    """A model started with ``embeddings = true`` (llama-server ``--embeddings``). SmolLM2's GGUF
    names no pooling type, which llama-server's OpenAI endpoint needs: ``--pooling mean``."""
    return start_router(
        {EMBEDDER_ID: smollm2(preload=True, embeddings=True, extra_args=["--pooling", "mean"])}, wait_ready=True
    )


def test_completion_is_generated_by_the_models_llama_server(router: ServiceProcess, client: httpx.Client) -> None:
    child, auth = child_url(router, SMOLLM2_ID), child_headers(router, SMOLLM2_ID)
    before = tokens_predicted(child, auth)
    response = client.post("/v1/completions", json=PROMPT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"]
    assert tokens_predicted(child, auth) - before == body["usage"]["completion_tokens"] > 0


def test_completion_equals_the_llama_servers_own_answer(router: ServiceProcess, client: httpx.Client) -> None:
    uncached = {**PROMPT, "cache_prompt": False}  # a cached prompt's logits are not bit-identical (batch size)
    routed = client.post("/v1/completions", json=uncached)
    direct = httpx.post(
        child_url(router, SMOLLM2_ID) + "/v1/completions",
        json=uncached,
        headers=child_headers(router, SMOLLM2_ID),
        timeout=60,
    )
    assert routed.status_code == direct.status_code == 200
    assert routed.json()["choices"][0]["text"] == direct.json()["choices"][0]["text"]


def test_streamed_completion_relays_text_chunks_and_one_done(router: ServiceProcess) -> None:
    stream = post_sse(router.url + "/v1/completions", {**PROMPT, "stream": True})
    assert stream.status == 200, stream.data
    assert stream.data[-1] == DONE and stream.data.count(DONE) == 1
    assert "".join(choice.get("text") or "" for chunk in stream.chunks for choice in chunk["choices"])


def test_embeddings_are_the_llama_servers_own_vectors(embedder: ServiceProcess) -> None:
    body = {"model": EMBEDDER_ID, "input": INPUTS}
    routed = httpx.post(embedder.url + "/v1/embeddings", json=body, timeout=60)
    direct = httpx.post(
        child_url(embedder, EMBEDDER_ID) + "/v1/embeddings",
        json=body,
        headers=child_headers(embedder, EMBEDDER_ID),
        timeout=60,
    )
    assert routed.status_code == direct.status_code == 200, routed.text
    vectors = [item["embedding"] for item in routed.json()["data"]]
    assert len(vectors) == len(INPUTS) and len({len(vector) for vector in vectors}) == 1 and len(vectors[0]) > 1
    assert vectors == [item["embedding"] for item in direct.json()["data"]]
    assert vectors[0] != vectors[1]
