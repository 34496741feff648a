"""Ollama's embeddings and model lifetime through the router, on a router of its own (its models
are loaded and unloaded here): /api/embed and the legacy /api/embeddings with the real library,
an empty request that loads or unloads, and ``keep_alive`` as the model's idle TTL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import httpx
import ollama
import pytest

from inference_service.router.api.ollama.catalog import NEVER
from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

EMBED_ID = "smollm2-embed"


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    models = {EMBED_ID: smollm2(embeddings=True, preload=True), SMOLLM2_ID: smollm2(ttl_s=600)}
    return start_router(models, wait_ready=True)


@pytest.fixture(scope="module")
def client(router: ServiceProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=router.url, timeout=120) as ollama_client:
        yield ollama_client


def running(client: ollama.Client) -> dict[str, ollama.ProcessResponse.Model]:
    return {model.model or "": model for model in client.ps().models}


def test_embed_gives_one_vector_per_input_in_order(client: ollama.Client) -> None:
    reply = client.embed(model=EMBED_ID, input=["hello world", "a different sentence"])
    first, second = reply.embeddings
    assert len(first) == len(second) > 100 and first != second
    assert reply.embeddings[0] == client.embed(model=EMBED_ID, input="hello world").embeddings[0]


def test_the_legacy_embeddings_endpoint_gives_one_vector(client: ollama.Client) -> None:
    embedding = client.embeddings(model=EMBED_ID, prompt="hello world").embedding
    assert len(embedding) == len(client.embed(model=EMBED_ID, input="hello world").embeddings[0])


def test_embeddings_of_a_chat_model_are_a_400_naming_the_fix(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        client.embed(model=SMOLLM2_ID, input="x")
    assert raised.value.status_code == 400 and "embeddings = true" in raised.value.error


def test_an_empty_generate_loads_the_model_and_with_keep_alive_zero_unloads_it(client: ollama.Client) -> None:
    loaded = client.generate(model=SMOLLM2_ID)
    assert loaded.done and loaded.done_reason == "load"
    assert f"{SMOLLM2_ID}:latest" in running(client)
    unloaded = client.generate(model=SMOLLM2_ID, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert f"{SMOLLM2_ID}:latest" not in running(client)


def test_keep_alive_zero_unloads_the_model_once_the_request_is_done(client: ollama.Client) -> None:
    client.chat(model=SMOLLM2_ID, messages=[])  # loaded, its ttl_s of 600 s counting
    reply = client.generate(model=SMOLLM2_ID, prompt="Hi", options={"num_predict": 1}, keep_alive=0)
    assert reply.done
    wait_until(lambda: f"{SMOLLM2_ID}:latest" not in running(client), timeout_s=10)


def test_a_negative_keep_alive_keeps_the_model_loaded_until_it_is_unloaded(
    client: ollama.Client, router: ServiceProcess
) -> None:
    client.generate(model=SMOLLM2_ID, prompt="Hi", options={"num_predict": 1}, keep_alive=-1)
    never = datetime.fromisoformat(NEVER.replace("Z", "+00:00"))
    assert running(client)[f"{SMOLLM2_ID}:latest"].expires_at == never
    assert httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}").json()["expires_at"] is None
    client.chat(model=SMOLLM2_ID, messages=[], keep_alive=0)  # unloaded: the keep_alive was for that use
    client.chat(model=SMOLLM2_ID, messages=[])
    card = httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}").json()
    assert card["expires_at"] == pytest.approx(card["loaded_at"] + 600, abs=5)
