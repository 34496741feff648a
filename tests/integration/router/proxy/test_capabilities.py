"""Capabilities: listed in /v1/models, honoured by orchestration, and a chat request to an
embeddings-only model answered 400 before it is loaded or called."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

EMBED_ID = "smollm2-embed"
RERANK_ID = "reranker"


@pytest.fixture(scope="module")
def service(start_router: StartRouter) -> ServiceProcess:
    models = {
        SMOLLM2_ID: smollm2(preload=True),
        EMBED_ID: smollm2(embeddings=True, roles=["fast"]),
        RERANK_ID: smollm2(embeddings=True, pooling="rank", capabilities=["rerank"]),
    }
    return start_router(models, wait_ready=True, default_model=SMOLLM2_ID)


@pytest.fixture(scope="module")
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.url, timeout=120.0) as http:
        yield http


def test_models_list_says_what_each_model_can_do(client: httpx.Client) -> None:
    cards = {card["id"]: card for card in client.get("/v1/models").json()["data"]}
    assert cards[SMOLLM2_ID]["capabilities"] == ["chat", "completion"]
    assert cards[EMBED_ID]["capabilities"] == ["embeddings"]
    assert cards[RERANK_ID]["capabilities"] == ["rerank"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_chat_to_an_embeddings_model_is_a_400_naming_the_problem(
    service: ServiceProcess, client: httpx.Client, path: str
) -> None:
    response = client.post(path, json={"model": EMBED_ID, "messages": HI, "input": "hi", "max_tokens": 2})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "capability_not_supported" and error["param"] == "model"
    assert EMBED_ID in error["message"] and "embeddings" in error["message"]
    assert model_card(service, EMBED_ID)["status"] == "unloaded"  # refused before loading anything


def test_embeddings_from_a_chat_model_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/embeddings", json={"model": SMOLLM2_ID, "input": "hi"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "capability_not_supported"


def test_rerank_from_a_chat_model_is_a_400(client: httpx.Client) -> None:
    response = client.post("/v1/rerank", json={"model": SMOLLM2_ID, "query": "q", "documents": ["a", "b"]})
    assert response.status_code == 400 and response.json()["error"]["code"] == "capability_not_supported"


def test_ensemble_does_not_draft_the_embeddings_model(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", json={"messages": HI, "max_tokens": 2, "orchestration_mode": "ensemble"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "not_enough_models"
    assert EMBED_ID not in error["message"] and RERANK_ID not in error["message"]


def test_task_type_does_not_route_chat_to_the_embeddings_model_holding_its_role(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json={"messages": HI, "max_tokens": 2, "task_type": "simple"})
    assert response.status_code == 200, response.text
    assert response.json()["model"] == SMOLLM2_ID
