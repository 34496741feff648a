"""A model larger than the whole ``memory_budget_mb`` is refused without evicting anybody.

With SmolLM2 (~169 MB estimated at ctx 512) loaded and a 250 MB budget, gemma (~314 MB)
can never fit: evicting SmolLM2 first would cost its users their model for nothing.
"""

from __future__ import annotations

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import load, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2

pytestmark = pytest.mark.integration


def test_model_bigger_than_the_budget_gets_507_and_evicts_nothing(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma()}, memory_budget_mb=250)
    resident_pid = model_card(service, SMOLLM2_ID)["pid"]

    response = load(service, GEMMA_ID)

    assert response.status_code == 507, response.text
    assert "memory_budget_mb=250" in response.json()["error"]["message"]
    card = model_card(service, SMOLLM2_ID)
    assert (card["status"], card["pid"]) == ("loaded", resident_pid)
