"""Concurrent first requests for an unloaded model share one load."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat, llama_servers, model_card
from tests.support.configs import SMOLLM2_ID, smollm2

pytestmark = pytest.mark.integration

CONCURRENT = 10


def test_ten_concurrent_first_requests_spawn_exactly_one_child(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(parallel=4)})
    assert model_card(service, SMOLLM2_ID)["status"] == "unloaded"

    with ThreadPoolExecutor(CONCURRENT) as pool:
        statuses = [
            response.status_code for response in pool.map(lambda _: chat(service, SMOLLM2_ID), range(CONCURRENT))
        ]

    assert statuses == [200] * CONCURRENT
    spawns = [line for line in service.log().splitlines() if f"spawned llama-server[{SMOLLM2_ID}]" in line]
    assert len(spawns) == 1, spawns
    card = model_card(service, SMOLLM2_ID)
    assert [child.pid for child in llama_servers(service)] == [card["pid"]]
    assert card["restarts"] == 0
