"""pipeline: the fast model drafts, the thinker refines, the primary validates - strictly in order."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import orchestrated
from tests.support.configs import GEMMA_ID, SMOLLM2_ID

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(client: httpx.Client) -> dict[str, Any]:
    response = orchestrated(client, "pipeline")
    assert response.status_code == 200, response.text
    return response.json()


def test_pipeline_runs_drafter_refiner_validator_on_the_role_models(pipeline: dict[str, Any]) -> None:
    stages = [(stage["role"], stage["model"]) for stage in pipeline["orchestration"]["stages"]]
    assert stages == [("drafter", SMOLLM2_ID), ("refiner", GEMMA_ID), ("validator", SMOLLM2_ID)]


def test_each_pipeline_stage_starts_after_the_previous_one_finished(pipeline: dict[str, Any]) -> None:
    stages = pipeline["orchestration"]["stages"]
    for previous, following in itertools.pairwise(stages):
        assert following["started_at"] >= previous["finished_at"]
