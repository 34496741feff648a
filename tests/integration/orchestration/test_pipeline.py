"""pipeline: the fast model drafts, the thinker (the coder for ``task_type: code``) refines,
the primary validates - strictly in order."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import orchestrated, stages_by_role
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.llama import generated_by, tokens_predicted_by_model
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(client: httpx.Client) -> dict[str, Any]:
    response = orchestrated(client, "pipeline")
    assert response.status_code == 200, response.text
    return response.json()


def test_pipeline_runs_drafter_refiner_validator_on_the_role_models(pipeline: dict[str, Any]) -> None:
    stages = [(stage["role"], stage["model"]) for stage in pipeline["orchestration"]["stages"]]
    assert stages == [("drafter", SMOLLM2_ID), ("refiner", SMOLLM2_ID), ("validator", SMOLLM2_ID)]  # smollm2 is the thinker


def test_code_pipeline_is_refined_by_the_coder_models_llama_server(router: ServiceProcess, client: httpx.Client) -> None:
    before = tokens_predicted_by_model(router.url)
    response = orchestrated(client, "pipeline", task_type="code")
    assert response.status_code == 200, response.text
    generated = generated_by(before, tokens_predicted_by_model(router.url))
    stages = response.json()["orchestration"]["stages"]
    assert stages_by_role(response.json())["refiner"]["model"] == GEMMA_ID
    assert generated[GEMMA_ID] == sum(stage["usage"]["completion_tokens"] for stage in stages if stage["model"] == GEMMA_ID) > 0


def test_each_pipeline_stage_starts_after_the_previous_one_finished(pipeline: dict[str, Any]) -> None:
    stages = pipeline["orchestration"]["stages"]
    for previous, following in zip(stages, stages[1:]):
        assert following["started_at"] >= previous["finished_at"]
