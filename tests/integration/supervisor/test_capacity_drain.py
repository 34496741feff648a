"""A model that is already being unloaded makes room: a load waits for it instead of answering 507.

``max_loaded_models = 1``: SmolLM2 is unloaded while a streaming request still runs on it,
so it drains. A load of gemma during the drain must wait for SmolLM2 to leave, then
succeed - refusing with 507 would fail a request that capacity was about to allow.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import load, model_card, unload
from tests.support.busy import request_in_flight
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until

pytestmark = pytest.mark.integration


def test_load_during_another_models_drain_waits_for_the_room(start_service: StartService) -> None:
    service = start_service(
        {SMOLLM2_ID: smollm2(preload=True, ctx_size=2048, parallel=1), GEMMA_ID: gemma()},
        max_loaded_models=1,
        drain_timeout_s=30,
    )
    with ThreadPoolExecutor(2) as pool:
        with request_in_flight(service, SMOLLM2_ID):
            pending_unload = pool.submit(unload, service, SMOLLM2_ID)
            wait_until(lambda: model_card(service, SMOLLM2_ID)["status"] == "unloading", timeout_s=5.0)
            pending_load = pool.submit(load, service, GEMMA_ID)
            with pytest.raises(TimeoutError):
                pending_load.result(timeout=2.0)  # still waiting for the room, not refused
            assert model_card(service, GEMMA_ID)["status"] == "unloaded"  # queued for room: nothing started yet
        # The stream is closed: SmolLM2 drains, stops, and gemma gets its place.
        response = pending_load.result(timeout=30)
        assert pending_unload.result(timeout=30).json()["status"] == "unloaded"

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "loaded"
