"""Capacity limits and idle expiry: models leave memory by themselves when they must."""

from __future__ import annotations

import time

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat, gone, llama_servers, load, model_card, unload
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until

pytestmark = pytest.mark.integration


def test_loading_a_second_model_evicts_the_idle_first_when_one_may_be_loaded(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(), GEMMA_ID: gemma()}, max_loaded_models=1)
    assert chat(service, SMOLLM2_ID).status_code == 200
    first_pid = model_card(service, SMOLLM2_ID)["pid"]

    assert chat(service, GEMMA_ID).status_code == 200

    assert model_card(service, SMOLLM2_ID)["status"] == "unloaded"
    assert gone(first_pid)
    assert [child.pid for child in llama_servers(service)] == [model_card(service, GEMMA_ID)["pid"]]
    assert chat(service, SMOLLM2_ID).status_code == 200  # and back again: eviction never fails a request


def test_model_idle_past_its_ttl_is_unloaded(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True, ttl_s=1)})
    pid = model_card(service, SMOLLM2_ID)["pid"]
    # The reaper looks once a second: ttl 1 s + up to 1 s until it looks + the stop itself.
    wait_until(lambda: model_card(service, SMOLLM2_ID)["status"] == "unloaded", timeout_s=6.0)
    assert gone(pid)


def test_ttl_counts_from_a_reload_not_from_a_request_before_the_unload(start_service: StartService) -> None:
    ttl_s = 4.0
    service = start_service({SMOLLM2_ID: smollm2(ttl_s=ttl_s)})
    assert chat(service, SMOLLM2_ID).status_code == 200  # last used now
    assert unload(service, SMOLLM2_ID).status_code == 200
    time.sleep(ttl_s)  # the last request is now older than the TTL

    assert load(service, SMOLLM2_ID).status_code == 200
    time.sleep(2.0)  # two reaper passes, well inside the TTL of this fresh load

    assert model_card(service, SMOLLM2_ID)["status"] == "loaded"
