"""What can go wrong with saved slots never costs a load or holds up a stop."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.integration.continuity.conftest import StartService
from tests.support.api import model_card
from tests.support.busy import request_in_flight
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.conversation import TURN_TIMEOUT_S, Conversation
from tests.support.events import listening
from tests.support.prometheus import sample
from tests.support.sse import DONE


def test_saves_and_restores_are_told_in_events_metrics_the_model_card_and_log(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(ctx_size=1024, parallel=1)})
    with (
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
        listening(f"{service.url}/v1/events?types=kv_cache") as events,
    ):
        turn = Conversation(SMOLLM2_ID, turns=2).next_turn(client)
        unloaded = client.post(f"/v1/models/{SMOLLM2_ID}/unload").json()
        saved = events.wait_for(lambda event: event["action"] == "saved", timeout_s=30)
        client.post(f"/v1/models/{SMOLLM2_ID}/load").raise_for_status()
        restored = events.wait_for(lambda event: event["action"] == "restored", timeout_s=30)
        metrics = client.get("/metrics").text
        log = client.get(f"/v1/models/{SMOLLM2_ID}/logs").text
    assert saved["slot"] == restored["slot"] == 0 and saved["tokens"] == restored["tokens"] >= turn.prompt_tokens
    assert unloaded["kv_cache_mb"] == round(saved["bytes"] / 2**20, 1) > 0
    assert sample(metrics, "inference_kv_cache_saves_total", model=SMOLLM2_ID) == 1
    assert sample(metrics, "inference_kv_cache_restores_total", model=SMOLLM2_ID) == 1
    assert sample(metrics, "inference_kv_cache_bytes_total", model=SMOLLM2_ID, action="restored") == restored["bytes"]
    assert sample(metrics, "inference_kv_cache_disk_bytes", model=SMOLLM2_ID) == saved["bytes"]
    assert "[inference-service] restored slot 0" in log


def test_a_corrupt_kv_file_is_skipped_counted_and_the_model_still_loads(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start_service({SMOLLM2_ID: smollm2(ctx_size=1024, parallel=1)})
    with httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client:
        Conversation(SMOLLM2_ID, turns=2).next_turn(client)
        client.post(f"/v1/models/{SMOLLM2_ID}/unload").raise_for_status()
        [saved] = (tmp_path / "kv").glob("*/*.bin")
        corrupted = bytearray(saved.read_bytes())
        corrupted[len(corrupted) // 2] ^= 0xFF
        saved.write_bytes(corrupted)
        with listening(f"{service.url}/v1/events?types=kv_cache") as events:
            assert client.post(f"/v1/models/{SMOLLM2_ID}/load").json()["status"] == "loaded"
            skipped = events.wait_for(lambda event: event["action"] == "skipped", timeout_s=30)
        metrics = client.get("/metrics").text
    assert (skipped["operation"], skipped["reason"]) == ("restore", "corrupt")
    assert sample(metrics, "inference_kv_cache_skipped_total", model=SMOLLM2_ID, reason="corrupt") == 1
    assert sample(metrics, "inference_kv_cache_restores_total", model=SMOLLM2_ID) is None
    assert not saved.exists()


def test_a_slot_still_generating_is_not_saved_and_the_stop_goes_on(start_service: StartService) -> None:
    """Its request outlasted the drain: llama-server would save the slot only once it is done,
    and it is about to be cut off. The stream asks for far more tokens than the stop lets it produce."""
    service = start_service({SMOLLM2_ID: smollm2(ctx_size=2048, parallel=1)}, drain_timeout_s=0)
    max_tokens = 1900
    with (
        listening(f"{service.url}/v1/events?types=kv_cache") as events,
        request_in_flight(service, SMOLLM2_ID, max_tokens) as lines,  # generating: the slot is busy
    ):
        httpx.post(f"{service.url}/v1/models/{SMOLLM2_ID}/unload", timeout=TURN_TIMEOUT_S).raise_for_status()
        assert model_card(service, SMOLLM2_ID)["status"] == "unloaded"
        skipped = events.wait_for(lambda event: event["action"] == "skipped", timeout_s=30)
        received = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert (skipped["operation"], skipped["reason"]) == ("save", "busy")
    tokens = [payload for payload in received if payload != DONE and "error" not in json.loads(payload)]
    assert len(tokens) < max_tokens and "upstream_died" in received[-2], received[-2:]  # cut by the stop


def test_a_save_outlasting_its_budget_is_abandoned_and_the_stop_goes_on(
    start_service: StartService, tmp_path: Path
) -> None:
    """No save of a slot's megabytes fits in a millisecond: whatever step it was at, the stop goes on
    and nothing half-written is left behind."""
    service = start_service({SMOLLM2_ID: smollm2(ctx_size=1024, parallel=1)}, kv_cache_timeout_s=0.001)
    with (
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
        listening(f"{service.url}/v1/events?types=kv_cache") as events,
    ):
        Conversation(SMOLLM2_ID, turns=2).next_turn(client)
        assert client.post(f"/v1/models/{SMOLLM2_ID}/unload").json()["status"] == "unloaded"
        # (The load's restore had the same millisecond: it may have been cut short too.)
        abandoned = events.wait_for(lambda event: event.get("operation") == "save", timeout_s=30)
    assert (abandoned["action"], abandoned["reason"]) == ("skipped", "timeout")
    assert not list((tmp_path / "kv").glob("*/*.partial"))
