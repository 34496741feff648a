"""``memory_budget_mb`` evicts like ``max_loaded_models`` does; a busy model is never evicted (a load
waits for its room instead), and nothing is evicted for a model that could not fit even alone.

Estimates (weights + KV cache from the GGUF headers, the default 256 MB prompt cache, overhead):
SmolLM2 at ctx 2048 ~458 MB, gemma at ctx 512 ~570 MB. A 700 MB budget holds either, never both;
a 500 MB budget never holds gemma.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat, gone, load, model_card
from tests.support.busy import request_in_flight
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2

pytestmark = pytest.mark.integration

#: SmolLM2 with one slot large enough for a long in-flight request, and gemma.
MODELS = {SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1), GEMMA_ID: gemma()}
ONE_MODEL_ONLY = {"max_loaded_models": 1}
BUDGET_FOR_ONE = {"memory_budget_mb": 700}
BUDGET_TOO_SMALL_FOR_GEMMA = {"memory_budget_mb": 500}


def test_memory_budget_too_small_for_both_evicts_the_idle_first(start_service: StartService) -> None:
    service = start_service(MODELS, **BUDGET_FOR_ONE)
    first_pid = model_card(service, SMOLLM2_ID)["pid"]

    response = chat(service, GEMMA_ID)

    assert response.status_code == 200, response.text
    assert model_card(service, SMOLLM2_ID)["status"] == "unloaded"
    assert gone(first_pid)


@pytest.mark.parametrize("limit", [ONE_MODEL_ONLY, BUDGET_FOR_ONE], ids=["max_loaded_models", "memory_budget_mb"])
def test_load_needing_a_busy_models_room_waits_and_never_evicts_it_mid_request(
    start_service: StartService, limit: dict[str, Any]
) -> None:
    models = {**MODELS, GEMMA_ID: gemma(queue_timeout_s=2)}  # how long a load may wait for room
    service = start_service(models, swap_max_wait_s=60, **limit)
    busy_pid = model_card(service, SMOLLM2_ID)["pid"]

    with request_in_flight(service, SMOLLM2_ID):
        response = load(service, GEMMA_ID)
        card = model_card(service, SMOLLM2_ID)

    assert response.status_code == 503, response.text  # waited for the room (no 507), then gave up
    assert "did not get capacity to load within 2s" in response.json()["error"]["message"]
    assert (card["status"], card["pid"]) == ("loaded", busy_pid)
    assert model_card(service, GEMMA_ID)["status"] == "unloaded"


def test_model_bigger_than_the_whole_budget_gets_507_and_evicts_nothing(start_service: StartService) -> None:
    service = start_service(MODELS, **BUDGET_TOO_SMALL_FOR_GEMMA)
    resident_pid = model_card(service, SMOLLM2_ID)["pid"]

    response = load(service, GEMMA_ID)

    assert response.status_code == 507, response.text
    assert "more than the whole memory_budget_mb=500" in response.json()["error"]["message"]
    card = model_card(service, SMOLLM2_ID)
    assert (card["status"], card["pid"]) == ("loaded", resident_pid)  # not evicted for nothing
