"""pipeline's refiner branch: a ``coder`` for ``task_type: code``, a ``thinker`` otherwise.

Coder and thinker are different llama-server processes here (gemma, and a second SmolLM2
under its own id), so which one refined is proved by whose own token counter moved - not
by the stage names the router writes itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION, stages_by_role
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.llama import generated_by, tokens_predicted_by_model
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

THINKER_ID = "smollm2-thinker"
PARTICIPANTS = [SMOLLM2_ID, GEMMA_ID, THINKER_ID]


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The package's router has one model for both roles: this one gives coder and thinker a process each."""
    directory = tmp_path_factory.mktemp("pipeline-branches")
    models = {
        SMOLLM2_ID: smollm2(preload=True, roles=["primary", "fast"]),
        GEMMA_ID: gemma(preload=True, roles=["coder"]),
        THINKER_ID: smollm2(preload=True, roles=["thinker"]),
    }
    config = write_config(directory / "config.toml", models, default_model=SMOLLM2_ID)
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


def _pipeline(router: ServiceProcess, **fields: Any) -> tuple[dict[str, Any], dict[str, float]]:
    """Run a pipeline; its stages, and how many tokens each child generated meanwhile."""
    before = tokens_predicted_by_model(router.url)
    body = {
        "messages": QUESTION,
        "orchestration_mode": "pipeline",
        "orchestration": {"models": PARTICIPANTS},
        "max_tokens": 4,
        "temperature": 0,
        "seed": 7,
        **fields,
    }
    response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    generated = generated_by(before, tokens_predicted_by_model(router.url))
    return stages_by_role(response.json()), generated


def test_code_task_is_refined_by_the_coder(router: ServiceProcess) -> None:
    stages, generated = _pipeline(router, task_type="code")
    assert stages["refiner"]["model"] == GEMMA_ID
    assert generated[GEMMA_ID] == stages["refiner"]["usage"]["completion_tokens"] > 0
    assert THINKER_ID not in generated


def test_other_tasks_are_refined_by_the_thinker(router: ServiceProcess) -> None:
    stages, generated = _pipeline(router, task_type="general")
    assert stages["refiner"]["model"] == THINKER_ID
    assert generated[THINKER_ID] == stages["refiner"]["usage"]["completion_tokens"] > 0
    assert GEMMA_ID not in generated
