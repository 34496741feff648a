"""AC-21.3 - multi-model orchestration: critique and debate across two real llama-server processes.

phi-4 and llama-3.2-3b are served by different models (gemma-3-270m and SmolLM2-135M in the
test config), so every orchestrated request here really involves two processes. One critique
request is shared by the critique tests (each checks one property of it) to keep the suite fast.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.conftest import (
    FAST_MODEL,
    MULTI_MODEL,
    ORCHESTRATION_MODEL,
    ChatRequestFactory,
    ResponseValidator,
    SSEParser,
    model_card,
    post_stream,
)

pytestmark = [pytest.mark.integration]

PAIR = [ORCHESTRATION_MODEL, FAST_MODEL]


class _CritiqueOnce:
    """The module's one critique completion, made on first use - after the test's skip fixtures ran."""

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = None

    async def get(self, http: httpx.AsyncClient) -> dict[str, Any]:
        if self._data is None:
            request = ChatRequestFactory.orchestrated(mode="critique", models=PAIR)
            response = await http.post("/v1/chat/completions", json=request)
            assert response.status_code == 200, response.text
            self._data = response.json()
        return self._data


@pytest.fixture(scope="module")
def critique() -> _CritiqueOnce:
    return _CritiqueOnce()


@pytest.mark.requires_model
async def test_critique_mode_uses_two_distinct_models(
    client: httpx.AsyncClient, skip_if_no_models: None, critique: _CritiqueOnce, response_validator: type[ResponseValidator]
) -> None:
    """Exit criterion: critique mode reports 2+ distinct models used."""
    orchestration = response_validator.validate_orchestration(await critique.get(client), mode="critique", min_models=2)
    assert len(set(orchestration["models_used"])) >= 2


@pytest.mark.requires_model
async def test_critique_models_run_in_separate_llama_server_processes(
    client: httpx.AsyncClient, skip_if_no_models: None, critique: _CritiqueOnce
) -> None:
    models_used = (await critique.get(client))["orchestration"]["models_used"]
    pids = {(await model_card(client, model_id))["pid"] for model_id in models_used}
    assert None not in pids, "a model of the critique has no process"
    assert len(pids) == len(models_used) >= 2


@pytest.mark.requires_model
async def test_critique_runs_generator_then_critic_then_reviser(
    client: httpx.AsyncClient, skip_if_no_models: None, critique: _CritiqueOnce
) -> None:
    stages = (await critique.get(client))["orchestration"]["stages"]
    assert [stage["role"] for stage in stages] == ["generator", "critic", "reviser"]
    generator, critic, reviser = (stage["model"] for stage in stages)
    assert critic != generator, "the critic must be a different model from the generator"
    assert reviser == generator, "the generator revises its own answer"


@pytest.mark.requires_model
async def test_critique_usage_is_the_sum_of_its_stages(
    client: httpx.AsyncClient, skip_if_no_models: None, critique: _CritiqueOnce
) -> None:
    data = await critique.get(client)
    stages = data["orchestration"]["stages"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert data["usage"][key] == sum(stage["usage"][key] for stage in stages), key


@pytest.mark.requires_model
async def test_critique_answer_is_a_valid_completion(
    client: httpx.AsyncClient, skip_if_no_models: None, critique: _CritiqueOnce, response_validator: type[ResponseValidator]
) -> None:
    response_validator.validate_completion(await critique.get(client))


@pytest.mark.requires_model
async def test_critique_between_aliases_of_one_model_is_rejected(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """Two names for the same model are one participant: critique needs two distinct models."""
    same_model = [FAST_MODEL, MULTI_MODEL]
    ids = {(await model_card(client, name))["id"] for name in same_model}
    if len(ids) != 1:
        pytest.skip(f"{same_model} are different models on this deployment")
    request = chat_request_factory.orchestrated(mode="critique", models=same_model, model=FAST_MODEL)
    response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_enough_models"


@pytest.mark.slow
@pytest.mark.requires_model
async def test_orchestrated_stream_ends_with_done_and_carries_metadata(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
    sse_parser: type[SSEParser],
) -> None:
    """A streamed critique: stage notices, the reviser's tokens, then usage + orchestration, then [DONE]."""
    response, raw = await post_stream(client, "/v1/chat/completions", chat_request_factory.orchestrated(models=PAIR, stream=True))
    assert response.status_code == 200
    assert raw.endswith(b"data: [DONE]\n\n")
    chunks = sse_parser.parse_stream(raw.decode())
    assert sse_parser.extract_content(chunks).strip(), "no streamed answer"
    response_validator.validate_orchestration(chunks[-1], mode="critique", min_models=2)


@pytest.mark.slow
@pytest.mark.requires_model
async def test_debate_mode_answers_with_two_models_and_an_agreement_score(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request_factory.orchestrated(mode="debate", models=PAIR))
    assert response.status_code == 200, response.text
    data = response.json()
    response_validator.validate_completion(data)
    orchestration = response_validator.validate_orchestration(data, mode="debate", min_models=2)
    assert 0.0 <= orchestration["confidence"] <= 1.0
    debaters = [stage["model"] for stage in orchestration["stages"] if stage["role"] == "debater"]
    assert len(set(debaters)) == 2, f"debaters: {debaters}"


async def test_unknown_orchestration_mode_returns_422(
    client: httpx.AsyncClient, skip_if_service_unavailable: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    response = await client.post("/v1/chat/completions", json=chat_request_factory.orchestrated(mode="telepathy"))
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "orchestration_mode"
