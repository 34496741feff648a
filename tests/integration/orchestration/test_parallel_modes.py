"""debate and ensemble: every participant answers at the same time, then the primary combines."""

from __future__ import annotations

import itertools
import re
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION, SHORT, orchestrated
from tests.support.api import child_headers, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.service import ServiceProcess

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


def _jaccard_agreement(texts: list[str]) -> float:
    """The README's definition: mean pairwise Jaccard similarity of the answers' (lower-cased) word sets."""
    sets = [set(re.findall(r"\w+", text.lower())) for text in texts]
    pairs = list(itertools.combinations(sets, 2))
    return sum(len(a & b) / len(a | b) if a | b else 1.0 for a, b in pairs) / len(pairs)


def _replay(router: ServiceProcess, model_id: str) -> dict[str, Any]:
    """The stage's request sent straight to the model's llama-server: at temperature 0 with a
    fixed seed it gives the answer the stage got (checked against the stage's own usage)."""
    response = httpx.post(
        f"http://127.0.0.1:{model_card(router, model_id)['port']}/v1/chat/completions",
        json={"messages": QUESTION, **SHORT},
        headers=child_headers(router, model_id),
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_confidence_is_the_agreement_of_the_parallel_answers(
    router: ServiceProcess, reply: tuple[str, dict[str, Any]]
) -> None:
    mode, body = reply
    stages = _parallel_stages(mode, body)
    replies = {stage["model"]: _replay(router, stage["model"]) for stage in stages}
    for stage in stages:  # the replayed answers are the ones the stages got
        assert replies[stage["model"]]["usage"]["completion_tokens"] == stage["usage"]["completion_tokens"]
    texts = [replies[stage["model"]]["choices"][0]["message"]["content"] for stage in stages]
    if mode == "ensemble":
        assert body["orchestration"]["answer_lengths"] == {
            stage["model"]: len(text) for stage, text in zip(stages, texts, strict=True)
        }
    assert body["orchestration"]["confidence"] == pytest.approx(_jaccard_agreement(texts), abs=1e-4)


def test_ensemble_reports_each_models_answer_length(replies: dict[str, dict[str, Any]]) -> None:
    lengths = replies["ensemble"]["orchestration"]["answer_lengths"]
    assert set(lengths) == {SMOLLM2_ID, GEMMA_ID}
    assert all(isinstance(length, int) and length > 0 for length in lengths.values())


@pytest.mark.parametrize("top_p", ['"abc"', "NaN"])
@pytest.mark.parametrize("mode", list(PARALLEL_ROLE))
def test_a_parameter_every_stage_refuses_is_the_clients_400_not_a_502(
    client: httpx.Client, mode: str, top_p: str
) -> None:
    """Every parallel stage gets the client's bad ``top_p`` and is refused with a 400: that is
    the answer, as in critique, pipeline and plain chat (the body is raw: JSON has no NaN)."""
    body = '{"orchestration_mode": "%s", "top_p": %s, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}'
    response = client.post(
        "/v1/chat/completions", content=body % (mode, top_p), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
