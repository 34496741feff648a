"""pipeline's refiner branch: a ``coder`` for ``task_type: code``, a ``thinker`` otherwise.

Coder and thinker are different llama-server processes here (gemma, and a second SmolLM2
under its own id), so which one refined is proved by whose own token counter moved - not
by the stage names the router writes itself.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter, child_url
from tests.support.api import child_headers
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.llama import tokens_predicted
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

THINKER_ID = "smollm2-thinker"
PARTICIPANTS = [SMOLLM2_ID, GEMMA_ID, THINKER_ID]


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    models = {
        SMOLLM2_ID: smollm2(preload=True, roles=["primary", "fast"]),
        GEMMA_ID: gemma(preload=True, roles=["coder"]),
        THINKER_ID: smollm2(preload=True, roles=["thinker"]),
    }
    return start_router(models, wait_ready=True, default_model=SMOLLM2_ID)


def _predicted(router: ServiceProcess) -> dict[str, float]:
    return {
        model_id: tokens_predicted(child_url(router, model_id), child_headers(router, model_id))
        for model_id in PARTICIPANTS
    }


def _pipeline(router: ServiceProcess, **fields: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Run a pipeline; its stages, and how many tokens each child generated meanwhile."""
    before = _predicted(router)
    body = {
        "messages": HI,
        "orchestration_mode": "pipeline",
        "orchestration": {"models": PARTICIPANTS},
        "max_tokens": 4,
        "temperature": 0,
        "seed": 7,
        **fields,
    }
    response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    after = _predicted(router)
    stages = {stage["role"]: stage for stage in response.json()["orchestration"]["stages"]}
    return stages, {model_id: after[model_id] - before[model_id] for model_id in PARTICIPANTS}


def test_code_task_is_refined_by_the_coder(router: ServiceProcess) -> None:
    stages, generated = _pipeline(router, task_type="code")
    assert stages["refiner"]["model"] == GEMMA_ID
    assert generated[GEMMA_ID] == stages["refiner"]["usage"]["completion_tokens"] > 0
    assert generated[THINKER_ID] == 0


def test_other_tasks_are_refined_by_the_thinker(router: ServiceProcess) -> None:
    stages, generated = _pipeline(router, task_type="general")
    assert stages["refiner"]["model"] == THINKER_ID
    assert generated[THINKER_ID] == stages["refiner"]["usage"]["completion_tokens"] > 0
    assert generated[GEMMA_ID] == 0
