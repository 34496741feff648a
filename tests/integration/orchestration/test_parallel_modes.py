"""debate and ensemble: every participant answers at the same time, then the primary combines."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import orchestrated
from tests.support.configs import GEMMA_ID, SMOLLM2_ID

pytestmark = pytest.mark.integration

PARALLEL_ROLE = {"debate": "debater", "ensemble": "member"}
FINAL_ROLE = {"debate": "reconciler", "ensemble": "synthesizer"}


@pytest.fixture(scope="module")
def replies(client: httpx.Client) -> dict[str, dict[str, Any]]:
    """One answer per mode, shared by every test of the module."""
    bodies = {}
    for mode in PARALLEL_ROLE:
        response = orchestrated(client, mode)
        assert response.status_code == 200, response.text
        bodies[mode] = response.json()
    return bodies


@pytest.fixture(params=list(PARALLEL_ROLE))
def reply(request: pytest.FixtureRequest, replies: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    return request.param, replies[request.param]


def _parallel_stages(mode: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [stage for stage in body["orchestration"]["stages"] if stage["role"] == PARALLEL_ROLE[mode]]


def test_every_model_answers_then_the_primary_combines(reply: tuple[str, dict[str, Any]]) -> None:
    mode, body = reply
    assert sorted(stage["model"] for stage in _parallel_stages(mode, body)) == sorted([SMOLLM2_ID, GEMMA_ID])
    final = body["orchestration"]["stages"][-1]
    assert (final["role"], final["model"]) == (FINAL_ROLE[mode], SMOLLM2_ID)


def test_parallel_stages_overlap_in_time(reply: tuple[str, dict[str, Any]]) -> None:
    stages = _parallel_stages(*reply)
    assert max(stage["started_at"] for stage in stages) < min(stage["finished_at"] for stage in stages), stages


def test_combining_stage_starts_after_every_answer(reply: tuple[str, dict[str, Any]]) -> None:
    mode, body = reply
    final = body["orchestration"]["stages"][-1]
    assert final["started_at"] >= max(stage["finished_at"] for stage in _parallel_stages(mode, body))


def test_confidence_is_between_0_and_1(reply: tuple[str, dict[str, Any]]) -> None:
    confidence = reply[1]["orchestration"]["confidence"]
    assert isinstance(confidence, float) and 0.0 <= confidence <= 1.0


def test_ensemble_reports_each_models_answer_length(replies: dict[str, dict[str, Any]]) -> None:
    lengths = replies["ensemble"]["orchestration"]["answer_lengths"]
    assert set(lengths) == {SMOLLM2_ID, GEMMA_ID}
    assert all(isinstance(length, int) and length > 0 for length in lengths.values())
