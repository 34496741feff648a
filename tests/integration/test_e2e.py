"""AC-21.1 - end-to-end chat completions against the running service and its real models."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    FAST_MODEL,
    MULTI_MODEL,
    ORCHESTRATION_MODEL,
    SERVICE_URL,
    ChatRequestFactory,
    ResponseValidator,
    model_card,
)
from tests.support.llama import generated_by, tokens_predicted_by_model

pytestmark = [pytest.mark.integration]


async def test_health_reports_ok(client: httpx.AsyncClient, skip_if_service_unavailable: None) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.requires_model
async def test_readiness_lists_the_loaded_models(client: httpx.AsyncClient, skip_if_no_models: None) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["loaded_models"], "ready without a loaded model"


@pytest.mark.requires_model
async def test_models_list_serves_every_readme_model_id(client: httpx.AsyncClient, skip_if_no_models: None) -> None:
    """The README's ids must all be served (here as aliases of the tiny stand-in models)."""
    response = await client.get("/v1/models")
    assert response.status_code == 200
    names = {name for card in response.json()["data"] for name in (card["id"], *card.get("aliases", []))}
    assert {FAST_MODEL, ORCHESTRATION_MODEL, MULTI_MODEL} <= names


@pytest.mark.requires_model
async def test_simple_completion(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
) -> None:
    """The README's example test, verbatim in spirit: a plain question gets a well-formed answer."""
    request = chat_request_factory.simple(message="What is 2 + 2?", max_tokens=50)
    response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 200, response.text
    response_validator.validate_completion(response.json())


@pytest.mark.requires_model
async def test_completion_usage_adds_up_and_respects_max_tokens(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request_factory.simple(max_tokens=8))
    assert response.status_code == 200, response.text
    response_validator.validate_usage(response.json(), max_completion_tokens=8)


@pytest.mark.requires_model
async def test_max_tokens_cuts_a_long_answer_with_finish_reason_length(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    request = chat_request_factory.simple(message="Write a long essay about the history of Rome.", max_tokens=4)
    response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4


@pytest.mark.requires_model
async def test_system_message_reaches_the_model(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """The system prompt is forwarded, not dropped: a longer one costs more prompt tokens.
    (Two system prompts are compared because some chat templates add a default one when none is sent.)"""
    short = await client.post(
        "/v1/chat/completions", json=chat_request_factory.with_system(system="Be brief.", max_tokens=1)
    )
    padding = " Always answer politely, precisely and in plain English."
    long = await client.post(
        "/v1/chat/completions", json=chat_request_factory.with_system(system="Be brief." + padding * 5, max_tokens=1)
    )
    assert short.status_code == long.status_code == 200
    assert long.json()["usage"]["prompt_tokens"] >= short.json()["usage"]["prompt_tokens"] + 20


async def _generated_by(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """POST ``body``; return which model's own llama-server generated the answer (and how many
    tokens), and the response - the proof of who served it is the children's counters."""
    before = tokens_predicted_by_model(SERVICE_URL)
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return generated_by(before, tokens_predicted_by_model(SERVICE_URL)), response.json()


@pytest.mark.requires_model
@pytest.mark.parametrize("name", [ORCHESTRATION_MODEL, f"inference:{ORCHESTRATION_MODEL}"])
async def test_alias_and_gateway_prefixed_name_are_served_by_the_canonical_models_llama_server(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory], name: str
) -> None:
    """An alias, and ``inference:<alias>`` (the gateway's naming) sent to the service directly."""
    canonical = (await model_card(client, ORCHESTRATION_MODEL))["id"]
    generated, data = await _generated_by(client, chat_request_factory.simple(model=name, max_tokens=4))
    assert generated == {canonical: data["usage"]["completion_tokens"]}


@pytest.mark.requires_model
async def test_code_task_without_model_is_served_by_the_coder_models_llama_server(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    models = (await client.get("/v1/models")).json()["data"]
    coders = [card["id"] for card in models if "coder" in card.get("roles", [])]
    assert len(coders) == 1, f"the suite's config has one model with the 'coder' role, not {coders}"
    generated, data = await _generated_by(client, chat_request_factory.code_task())
    assert generated == {coders[0]: data["usage"]["completion_tokens"]}


@pytest.mark.requires_model
async def test_request_id_is_echoed(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    response = await client.post(
        "/v1/chat/completions", json=chat_request_factory.simple(max_tokens=2), headers={"X-Request-ID": request_id}
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id


# --------------------------------------------------------------------------- error cases


async def test_unknown_model_returns_404(
    client: httpx.AsyncClient, skip_if_service_unavailable: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request_factory.simple(model="no-such-model-xyz"))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "no-such-model-xyz" in error["message"]


async def test_missing_messages_returns_422(client: httpx.AsyncClient, skip_if_service_unavailable: None) -> None:
    response = await client.post("/v1/chat/completions", json={"model": FAST_MODEL, "max_tokens": 4})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "messages"


async def test_empty_messages_returns_4xx(client: httpx.AsyncClient, skip_if_service_unavailable: None) -> None:
    response = await client.post("/v1/chat/completions", json={"model": FAST_MODEL, "messages": [], "max_tokens": 4})
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["param"] == "messages"


async def test_malformed_json_returns_400(client: httpx.AsyncClient, skip_if_service_unavailable: None) -> None:
    response = await client.post(
        "/v1/chat/completions", content=b'{"model": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
