"""AC-21.4 - the LiteLLM proxy (llm-gateway) in front of the service, configured by deploy/litellm/config.yaml.

"Routes through the gateway" is proven on the service's side: its own request counter for
the model must go up, so a 200 served by anything else (a cache, a fallback) would fail.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.conftest import (
    FAST_MODEL,
    GATEWAY_URL,
    ORCHESTRATION_MODEL,
    REQUEST_TIMEOUT_S,
    ChatRequestFactory,
    ResponseValidator,
    SSEParser,
    model_card,
    post_stream,
    requests_total,
)

pytestmark = [pytest.mark.integration, pytest.mark.requires_gateway]


async def test_gateway_is_alive(gateway_client: httpx.AsyncClient, skip_if_gateway_unavailable: None) -> None:
    response = await gateway_client.get("/health/liveliness")
    assert response.status_code == 200


async def test_gateway_lists_inference_and_local_names(
    gateway_client: httpx.AsyncClient, skip_if_gateway_unavailable: None
) -> None:
    response = await gateway_client.get("/v1/models")
    assert response.status_code == 200, response.text
    names = {card["id"] for card in response.json()["data"]}
    for model in (FAST_MODEL, ORCHESTRATION_MODEL):
        assert {f"inference:{model}", f"local:{model}"} <= names, f"{model} missing from {sorted(names)}"


@pytest.mark.requires_model
async def test_inference_phi4_routes_through_gateway_to_the_service(
    client: httpx.AsyncClient,
    gateway_client: httpx.AsyncClient,
    skip_if_no_models: None,
    skip_if_gateway_unavailable: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
) -> None:
    """Exit criterion: ``inference:phi-4`` sent to the gateway is served by this service's phi-4 model."""
    model_id = (await model_card(client, ORCHESTRATION_MODEL))["id"]
    before = await requests_total(client, model_id)
    response = await gateway_client.post(
        "/v1/chat/completions", json=chat_request_factory.simple(model=f"inference:{ORCHESTRATION_MODEL}", max_tokens=4)
    )
    assert response.status_code == 200, response.text
    response_validator.validate_completion(response.json())
    assert await requests_total(client, model_id) >= before + 1, "the service never saw the gateway's request"
    # LiteLLM passes the upstream's headers on with an llm_provider- prefix: the service's request id.
    assert response.headers.get("llm_provider-x-request-id"), "no X-Request-ID from the service in the gateway's reply"


@pytest.mark.requires_model
async def test_local_prefix_routes_through_gateway_to_the_service(
    client: httpx.AsyncClient,
    gateway_client: httpx.AsyncClient,
    skip_if_no_models: None,
    skip_if_gateway_unavailable: None,
    chat_request_factory: type[ChatRequestFactory],
) -> None:
    model_id = (await model_card(client, FAST_MODEL))["id"]
    before = await requests_total(client, model_id)
    response = await gateway_client.post(
        "/v1/chat/completions", json=chat_request_factory.simple(model=f"local:{FAST_MODEL}", max_tokens=4)
    )
    assert response.status_code == 200, response.text
    assert await requests_total(client, model_id) >= before + 1, "the service never saw the gateway's request"


@pytest.mark.requires_model
async def test_gateway_stream_ends_with_done(
    gateway_client: httpx.AsyncClient,
    skip_if_no_models: None,
    skip_if_gateway_unavailable: None,
    chat_request_factory: type[ChatRequestFactory],
    sse_parser: type[SSEParser],
) -> None:
    request = chat_request_factory.streaming(model=f"inference:{FAST_MODEL}", max_tokens=6)
    response, raw = await post_stream(gateway_client, "/v1/chat/completions", request)
    assert response.status_code == 200, raw[:300]
    assert raw.endswith(b"data: [DONE]\n\n"), f"gateway stream ends with {raw[-40:]!r}"
    assert sse_parser.extract_content(sse_parser.parse_stream(raw.decode())).strip(), "no streamed content"


@pytest.mark.requires_model
async def test_gateway_refuses_requests_without_the_master_key(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    skip_if_gateway_unavailable: None,
    chat_request_factory: type[ChatRequestFactory],
) -> None:
    """No key, no inference: the gateway answers with an error and the service sees nothing."""
    model_id = (await model_card(client, FAST_MODEL))["id"]
    before = await requests_total(client, model_id)
    async with httpx.AsyncClient(base_url=GATEWAY_URL, timeout=REQUEST_TIMEOUT_S) as anonymous:
        response = await anonymous.post(
            "/v1/chat/completions", json=chat_request_factory.simple(model=f"inference:{FAST_MODEL}", max_tokens=4)
        )
    assert response.status_code >= 400
    assert await requests_total(client, model_id) == before, "an unauthenticated request reached the service"
