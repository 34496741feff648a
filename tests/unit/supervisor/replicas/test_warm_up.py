"""Replicas the set brings up or stops on its own (warm-up, a queue, an idle TTL): the GGUF header is read off
the event loop, and a ``replica_scaled`` event is published only for a start or stop that happens."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from inference_service.config import ModelConfig, Settings
from inference_service.events import REPLICA_SCALED, Event
from inference_service.supervisor import ModelState, footprint
from tests.unit.supervisor.fakes import eventually

pytestmark = pytest.mark.timeout(30)

LOADED = ModelState.LOADED
ELASTIC = {"min_replicas": 1, "scale_up_wait_s": 0.05, "parallel": 1}


def scaled(harness: Any, direction: str) -> list[Event]:
    """Every ``replica_scaled`` event in ``direction`` from now on, as it is published."""
    published: list[Event] = []
    harness.supervisor.events.listen(
        lambda event: (
            published.append(event) if event.type == REPLICA_SCALED and event.data["direction"] == direction else None
        )
    )
    return published


async def test_a_replica_warmed_up_in_the_background_reads_its_gguf_header_off_the_event_loop(
    make_replicas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    measured: dict[str, bool] = {}

    def estimate(settings: Settings, model: ModelConfig) -> int:
        measured[model.replica_name] = threading.get_ident() == loop_thread
        return 100

    monkeypatch.setattr(footprint, "model_estimate_mb", estimate)
    harness = make_replicas(2, memory_budget_mb=100_000)
    await harness.supervisor.start()
    for _ in range(2):  # the second finds replica 0 serving: replica 1 is brought up in the background
        async with harness.supervisor.lease("m") as lease:
            await lease.ready()
    await eventually(lambda: harness.states() == [LOADED, LOADED])
    assert measured == {"m#0": False, "m#1": False}


async def test_a_queue_with_no_room_for_another_replica_announces_no_scale_up(make_replicas: Any) -> None:
    harness = make_replicas(2, ELASTIC, max_loaded_models=1)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    ups = scaled(harness, "up")
    replicas = harness.supervisor._get("m")
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m"):  # one slot: the second queues
        assert replicas._scale_up_timer is not None
        await eventually(lambda: replicas._scale_up_timer is None and not replicas._warming)
        assert (ups, harness.states()) == ([], [LOADED, ModelState.UNLOADED])


async def test_an_extra_replica_whose_idle_stop_a_request_prevents_announces_no_scale_down(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2, {**ELASTIC, "ttl_s": 60})
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    replicas = harness.supervisor._get("m")
    extra = replicas.actors[1]
    await extra.wait_ready(force=True)
    downs = scaled(harness, "down")
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m") as lease:
        assert lease.actor is extra  # a request came to it since the reaper found it idle
        replicas.stop_idle(extra, idle_s=61, ttl_s=60)
        await extra.reconfigure(extra.config, None)  # answered after the eviction, in mailbox order
        assert (downs, extra.state) == ([], LOADED)
