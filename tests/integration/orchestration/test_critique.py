"""critique: the generator answers, another model critiques, the generator revises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import child_metrics, orchestrated, wait_for_idle_children
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

PREDICTED = "llamacpp:tokens_predicted_total"


@dataclass
class Critique:
    body: dict[str, Any]
    predicted_delta: dict[str, float]  # tokens each child's own /metrics says it generated meanwhile


def _predicted(router: ServiceProcess) -> dict[str, float]:
    return {model_id: sample(child_metrics(router, model_id), PREDICTED) or 0.0 for model_id in (SMOLLM2_ID, GEMMA_ID)}


@pytest.fixture(scope="module")
def critique(router: ServiceProcess, client: httpx.Client) -> Critique:
    wait_for_idle_children(router)
    before = _predicted(router)
    response = orchestrated(client, "critique")
    assert response.status_code == 200, response.text
    after = _predicted(router)
    return Critique(response.json(), {model_id: after[model_id] - before[model_id] for model_id in before})


def test_critique_uses_two_distinct_models(critique: Critique) -> None:
    assert sorted(critique.body["orchestration"]["models_used"]) == sorted([SMOLLM2_ID, GEMMA_ID])


def test_critique_runs_generator_critic_reviser_on_the_role_models(critique: Critique) -> None:
    stages = [(stage["role"], stage["model"]) for stage in critique.body["orchestration"]["stages"]]
    assert stages == [("generator", SMOLLM2_ID), ("critic", GEMMA_ID), ("reviser", SMOLLM2_ID)]


def test_each_stage_is_generated_by_its_models_own_llama_server(critique: Critique) -> None:
    expected = {SMOLLM2_ID: 0, GEMMA_ID: 0}
    for stage in critique.body["orchestration"]["stages"]:
        expected[stage["model"]] += stage["usage"]["completion_tokens"]
    assert expected[SMOLLM2_ID] > 0 and expected[GEMMA_ID] > 0
    assert critique.predicted_delta == expected


def test_usage_is_the_sum_of_all_stages(critique: Critique) -> None:
    stages = critique.body["orchestration"]["stages"]
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert critique.body["usage"][key] == sum(stage["usage"][key] for stage in stages)
    assert critique.body["usage"]["total_tokens"] > max(stage["usage"]["total_tokens"] for stage in stages)


def test_critique_answer_is_a_chat_completion(critique: Critique) -> None:
    assert critique.body["object"] == "chat.completion"
    assert critique.body["choices"][0]["message"]["role"] == "assistant"
    assert critique.body["choices"][0]["message"]["content"]
    assert critique.body["orchestration"]["degraded"] is False


def test_critique_rounds_repeat_the_critic_and_reviser(client: httpx.Client) -> None:
    response = orchestrated(client, "critique", orchestration={"rounds": 2})
    assert response.status_code == 200, response.text
    report = response.json()["orchestration"]
    assert report["rounds"] == 2
    assert [stage["role"] for stage in report["stages"]] == ["generator", "critic", "reviser", "critic", "reviser"]
