"""A conversation's prefix survives the stops a running router makes: unload, eviction, swap, a restarting reload.

One router for the module - its first test pays the ~2,000-token prefill, the others go on
with the same conversation: SmolLM2 with a 4,096-token slot, and gemma; ``max_loaded_models
= 1``, so serving one model stops the other, and ``swap_max_wait_s = 0``, so a busy model
yields at once to a model waiting for its room.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.api import model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.conversation import (
    LONG_CONTEXT,
    TURN_TIMEOUT_S,
    Conversation,
    assert_prefix_kept,
    warm_turn,
)
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, running_service


@dataclass
class Stage:
    service: ServiceProcess
    config: Path
    client: httpx.Client
    conversation: Conversation
    cache_ram_mb: int  # as configured now: a reload changes it


def write(config: Path, cache_ram_mb: int) -> Path:
    models = {SMOLLM2_ID: smollm2(**LONG_CONTEXT, cache_ram_mb=cache_ram_mb), GEMMA_ID: gemma(parallel=1)}
    return write_config(config, models, max_loaded_models=1, swap_max_wait_s=0)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    directory = tmp_path_factory.mktemp("continuity")
    config = write(directory / "config.toml", cache_ram_mb=256)
    with (
        running_service(config, directory / "logs") as service,
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
    ):
        yield Stage(service, config, client, Conversation(SMOLLM2_ID), cache_ram_mb=256)


def ask_the_other_model(stage: Stage) -> None:
    """One short gemma turn: with one model allowed, SmolLM2 makes room for it."""
    body = {"model": GEMMA_ID, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    stage.client.post("/v1/chat/completions", json=body).raise_for_status()


def swaps(stage: Stage) -> float:
    metrics = stage.client.get("/metrics").text
    return sample(metrics, "inference_model_evictions_total", model=SMOLLM2_ID, reason="swap") or 0.0


def test_unload_then_load_keeps_the_conversation_prefix(stage: Stage) -> None:
    warm = warm_turn(stage.conversation, stage.client)
    stage.client.post(f"/v1/models/{SMOLLM2_ID}/unload").raise_for_status()
    assert model_card(stage.service, SMOLLM2_ID)["status"] == "unloaded"
    assert_prefix_kept(warm, stage.conversation.next_turn(stage.client))


def test_eviction_for_another_model_keeps_the_conversation_prefix(stage: Stage) -> None:
    warm = warm_turn(stage.conversation, stage.client)
    ask_the_other_model(stage)  # the idle SmolLM2 is evicted for it
    assert model_card(stage.service, SMOLLM2_ID)["status"] == "unloaded"
    assert_prefix_kept(warm, stage.conversation.next_turn(stage.client))


def test_a_busy_model_swapped_out_for_another_keeps_the_conversation_prefix(stage: Stage) -> None:
    warm = warm_turn(stage.conversation, stage.client)
    swapped_before = swaps(stage)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # A turn long enough to be in flight when gemma asks for the room: SmolLM2 yields, finishes it, is evicted.
        running = pool.submit(stage.conversation.next_turn, stage.client, max_tokens=64, ignore_eos=True)
        wait_until(lambda: model_card(stage.service, SMOLLM2_ID)["in_flight"] == 1, timeout_s=TURN_TIMEOUT_S)
        ask_the_other_model(stage)
        running.result()
    assert swaps(stage) == swapped_before + 1
    assert_prefix_kept(warm, stage.conversation.next_turn(stage.client))


def test_a_reload_that_restarts_the_model_keeps_the_conversation_prefix(stage: Stage) -> None:
    warm = warm_turn(stage.conversation, stage.client)
    pid = model_card(stage.service, SMOLLM2_ID)["pid"]
    stage.cache_ram_mb = 384 - stage.cache_ram_mb  # 256 <-> 128: a launch setting, so a restart
    write(stage.config, cache_ram_mb=stage.cache_ram_mb)
    reload = stage.client.post("/admin/reload").json()
    assert reload["restarted"] == [SMOLLM2_ID], reload
    assert model_card(stage.service, SMOLLM2_ID)["pid"] not in (None, pid)
    assert_prefix_kept(warm, stage.conversation.next_turn(stage.client))
