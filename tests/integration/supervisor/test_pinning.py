"""A pinned model stays loaded through a capacity squeeze that evicts every other idle model and
through its idle TTL; only an admin's explicit unload stops it. A reload that would pin more than
the capacity limits hold is rejected and the running config stays.

Estimates with ``cache_ram_mb = 0`` at ctx 512 (weights + KV cache + overhead, from the GGUF
headers): SmolLM2 169 MB, gemma 314 MB. A 607 MB budget holds three SmolLM2 copies (507 MB);
gemma then fits only beside one of them.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import TIMEOUT_S, chat, gone, load, model_card, unload
from tests.support.configs import GEMMA_ID, gemma, smollm2, wait_until, write_config

pytestmark = pytest.mark.integration

PINNED_ID, OTHER_IDS = "pinned", ("idle-a", "idle-b")
SQUEEZE = {
    PINNED_ID: smollm2(cache_ram_mb=0, pinned=True),
    **{model_id: smollm2(cache_ram_mb=0) for model_id in OTHER_IDS},
    GEMMA_ID: gemma(cache_ram_mb=0),
}
BUDGET_FOR_THREE_SMOL = {"memory_budget_mb": 607}


def test_a_capacity_squeeze_evicts_every_other_idle_model_and_keeps_the_pinned_one(
    start_service: StartService,
) -> None:
    service = start_service(SQUEEZE, **BUDGET_FOR_THREE_SMOL)
    for model_id in (PINNED_ID, *OTHER_IDS):  # loaded first: the least recently used of the three
        assert load(service, model_id).status_code == 200
    pinned_pid = model_card(service, PINNED_ID)["pid"]
    other_pids = [model_card(service, model_id)["pid"] for model_id in OTHER_IDS]

    response = chat(service, GEMMA_ID)  # needs two of the three out

    assert response.status_code == 200, response.text
    card = model_card(service, PINNED_ID)
    assert (card["status"], card["pid"], card["pinned"]) == ("loaded", pinned_pid, True)
    assert [model_card(service, model_id)["status"] for model_id in OTHER_IDS] == ["unloaded", "unloaded"]
    assert all(gone(pid) for pid in other_pids)


def test_the_idle_ttl_unloads_other_models_but_not_a_pinned_one(start_service: StartService) -> None:
    models = {PINNED_ID: smollm2(pinned=True, ttl_s=1), "witness": smollm2(ttl_s=1)}
    service = start_service(models)
    assert load(service, PINNED_ID).status_code == 200  # first: idle at least as long as the witness
    pinned_pid = model_card(service, PINNED_ID)["pid"]
    assert pinned_pid
    assert load(service, "witness").status_code == 200

    # The reaper unloads the witness on a pass that also found the pinned model idle past its ttl_s.
    wait_until(lambda: model_card(service, "witness")["status"] == "unloaded", timeout_s=60)

    card = model_card(service, PINNED_ID)
    assert (card["status"], card["pid"], card["expires_at"]) == ("loaded", pinned_pid, None)


def test_an_admin_unload_stops_a_pinned_model(start_service: StartService) -> None:
    service = start_service({PINNED_ID: smollm2(pinned=True, preload=True)})
    pid = model_card(service, PINNED_ID)["pid"]
    assert unload(service, PINNED_ID).status_code == 200
    assert model_card(service, PINNED_ID)["status"] == "unloaded" and gone(pid)


def test_an_ollama_keep_alive_zero_does_not_unload_a_pinned_model(start_service: StartService) -> None:
    service = start_service({PINNED_ID: smollm2(pinned=True, preload=True)})
    pid = model_card(service, PINNED_ID)["pid"]
    response = httpx.post(f"{service.url}/api/generate", json={"model": PINNED_ID, "keep_alive": 0}, timeout=TIMEOUT_S)
    assert response.status_code == 409, response.text
    assert "pinned" in response.json()["error"]
    card = model_card(service, PINNED_ID)
    assert (card["status"], card["pid"]) == ("loaded", pid)


def test_a_reload_pinning_more_than_the_budget_holds_is_rejected_and_the_running_config_stays(
    start_service: StartService, tmp_path: Path
) -> None:
    models = {PINNED_ID: smollm2(cache_ram_mb=0, pinned=True, preload=True), "other": smollm2(cache_ram_mb=0)}
    service = start_service(models, **BUDGET_FOR_THREE_SMOL)
    pid = model_card(service, PINNED_ID)["pid"]
    both_pinned = {**models, "other": smollm2(cache_ram_mb=0, pinned=True)}
    write_config(tmp_path / "config.toml", both_pinned, memory_budget_mb=300)  # the file the service reads

    response = httpx.post(f"{service.url}/admin/reload", timeout=TIMEOUT_S)

    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "pinned models (pinned, other) need ~338 MB, more than memory_budget_mb=300" in message
    assert model_card(service, "other")["pinned"] is False  # the running config stays
    card = model_card(service, PINNED_ID)
    assert (card["status"], card["pid"]) == ("loaded", pid)
