"""An unload that arrives while a model is still loading calls the load off cleanly.

The waiting caller gets an OpenAI-style 503 that says what happened (not a bare 500 from
a cancellation leaking out of the shared load), and the half-started child is stopped.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import llama_servers, load, model_card, unload
from tests.support.configs import GEMMA_ID, gemma, wait_until

pytestmark = pytest.mark.integration


def test_load_interrupted_by_unload_answers_503_and_leaves_no_child(start_service: StartService) -> None:
    service = start_service({GEMMA_ID: gemma()})  # the slower of the two models to load: easier to catch mid-load
    with ThreadPoolExecutor(1) as pool:
        pending_load = pool.submit(load, service, GEMMA_ID)
        wait_until(lambda: model_card(service, GEMMA_ID)["status"] == "loading", timeout_s=10.0, interval_s=0.02)
        assert unload(service, GEMMA_ID).json()["status"] == "unloaded"
        response = pending_load.result(timeout=30)

    assert response.status_code == 503, response.text
    assert "unloaded while it was loading" in response.json()["error"]["message"]
    assert llama_servers(service) == []
