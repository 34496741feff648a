"""``task_type`` picks the model when the request leaves the choice to the router (no ``model``,
or the default one): ``reasoning`` the ``thinker``, ``simple`` the ``fast`` model. Who served
is read from the children's own token counters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import HI, StartRouter
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2
from tests.support.llama import generated_by, tokens_predicted_by_model
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """gemma is the default and primary model; SmolLM2 the thinker and the fast one."""
    models = {
        GEMMA_ID: gemma(preload=True, roles=["primary"]),
        SMOLLM2_ID: smollm2(preload=True, roles=["thinker", "fast"]),
    }
    return start_router(models, wait_ready=True, default_model=GEMMA_ID)


def _served_by(router: ServiceProcess, **fields: Any) -> dict[str, float]:
    before = tokens_predicted_by_model(router.url)
    response = httpx.post(
        router.url + "/v1/chat/completions", json={"messages": HI, "max_tokens": 2, **fields}, timeout=120
    )
    assert response.status_code == 200, response.text
    generated = generated_by(before, tokens_predicted_by_model(router.url))
    assert sum(generated.values()) == response.json()["usage"]["completion_tokens"]
    return generated


@pytest.mark.parametrize("task_type", ["reasoning", "simple"])
def test_task_type_without_a_model_picks_the_role_model(router: ServiceProcess, task_type: str) -> None:
    assert set(_served_by(router, task_type=task_type)) == {SMOLLM2_ID}


@pytest.mark.parametrize("task_type", ["reasoning", "simple"])
def test_task_type_with_the_default_model_picks_the_role_model(router: ServiceProcess, task_type: str) -> None:
    assert set(_served_by(router, model=GEMMA_ID, task_type=task_type)) == {SMOLLM2_ID}


def test_general_task_without_a_model_is_served_by_the_default_model(router: ServiceProcess) -> None:
    assert set(_served_by(router, task_type="general")) == {GEMMA_ID}
