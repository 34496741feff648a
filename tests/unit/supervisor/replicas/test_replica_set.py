"""A model with replicas, driven through the supervisor with scriptable runtimes (tests/integration/replicas
proves the same with real llama-server processes; these control when a replica starts or crashes)."""

from __future__ import annotations

import asyncio
from typing import Any

from inference_service.config import Settings
from inference_service.events import REPLICA_SCALED, Subscription
from inference_service.supervisor import ModelState
from inference_service.supervisor.capacity import pinned_overflow
from inference_service.supervisor.replicas.routing import Affinity
from tests.unit.supervisor.fakes import eventually

LOADED = ModelState.LOADED


async def test_a_model_that_serves_and_is_wanted_again_brings_up_every_replica(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    for _ in range(2):
        async with harness.supervisor.lease("m") as lease:
            await lease.ready()
    await eventually(lambda: harness.states() == [LOADED, LOADED])


async def test_concurrent_requests_without_a_shared_prefix_go_to_the_least_loaded_replica(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    async with harness.supervisor.lease("m") as first, harness.supervisor.lease("m") as second:
        assert {first.actor.name, second.actor.name} == {"m#0", "m#1"}


async def test_a_conversation_returns_to_the_replica_that_served_its_prefix(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    # replica 0 busy: the first turn goes to replica 1
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m", affinity=Affinity(prefix=(11, 12))) as turn:
        first_turn = turn.actor.name
    async with harness.supervisor.lease("m", affinity=Affinity(prefix=(11, 12, 13))) as turn:
        assert turn.actor.name == first_turn == "m#1"


async def test_a_crashed_replica_is_restarted_while_the_other_serves_at_once(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    gate = harness.runtimes["m#0"].gate = asyncio.Event()  # its restart hangs until released
    harness.runtimes["m#0"].crash()
    await eventually(lambda: harness.states() == [ModelState.LOADING, LOADED])
    async with harness.supervisor.lease("m") as lease:
        assert lease.actor.name == "m#1" and lease.ready_now() is not None
    gate.set()
    await eventually(lambda: harness.states() == [LOADED, LOADED])
    assert harness.supervisor.status("m").restarts == 1


async def test_each_replica_counts_against_max_loaded_models_and_none_displaces_another(make_replicas: Any) -> None:
    harness = make_replicas(2, max_loaded_models=1)
    await harness.supervisor.start()
    for _ in range(3):
        async with harness.supervisor.lease("m") as lease:
            await lease.ready()
            assert lease.actor.name == "m#0"
    assert harness.states() == [LOADED, ModelState.UNLOADED]
    assert harness.runtimes["m#0"].stops == 0


async def test_a_reload_adding_a_replica_leaves_the_running_ones_untouched(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    before = dict(harness.runtimes)
    await harness.supervisor.replace_model(harness.config(replicas=3), restart=False)
    assert harness.states() == [LOADED, LOADED, LOADED]
    assert all(harness.runtimes[name] is runtime and runtime.stops == 0 for name, runtime in before.items())


async def test_a_reload_removing_a_replica_stops_only_that_one(make_replicas: Any) -> None:
    harness = make_replicas(3)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    await harness.supervisor.replace_model(harness.config(replicas=2), restart=False)
    assert harness.states() == [LOADED, LOADED]
    runtimes = [harness.runtimes[f"m#{i}"] for i in range(3)]
    await eventually(lambda: not runtimes[2].running)  # retired in the background
    assert [runtime.running for runtime in runtimes] == [True, True, False]
    assert [runtime.stops for runtime in runtimes[:2]] == [0, 0]


ELASTIC = {"min_replicas": 1, "scale_up_wait_s": 0.05, "parallel": 1}


async def test_an_elastic_model_loads_only_its_min_replicas(make_replicas: Any) -> None:
    harness = make_replicas(2, ELASTIC)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    async with harness.supervisor.lease("m") as lease:  # one request, one slot: nothing queues
        await lease.ready()
    assert harness.states() == [LOADED, ModelState.UNLOADED]


async def test_a_queue_that_waits_past_scale_up_wait_s_starts_another_replica(make_replicas: Any) -> None:
    harness = make_replicas(2, ELASTIC)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m") as queued:
        assert queued.actor.name == "m#0"  # the only replica serving: the second request queues on it
        await eventually(lambda: harness.states() == [LOADED, LOADED])


async def test_the_extra_replica_stops_after_its_idle_ttl_while_the_min_replicas_floor_stays_up(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2, {**ELASTIC, "ttl_s": 0.5})
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m"):
        await eventually(lambda: harness.states()[1] == LOADED)
    # both replicas went idle together: the reaper's pass that stops the extra one has seen the floor idle too
    await eventually(lambda: harness.states()[1] == ModelState.UNLOADED, timeout_s=5.0)
    assert harness.states()[0] == LOADED


async def scaling(subscription: Subscription) -> dict[str, Any]:
    """The next ``replica_scaled`` event, as ``/v1/events`` sends it, less its sequence number and time."""
    event, _ = await asyncio.wait_for(subscription.next(), timeout=5.0)
    return {k: v for k, v in event.as_dict().items() if k not in ("seq", "time")}


async def test_a_scale_up_for_a_waiting_queue_is_published(make_replicas: Any) -> None:
    harness = make_replicas(2, ELASTIC)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    subscription = harness.supervisor.events.subscribe(types=[REPLICA_SCALED])
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m"):
        assert await scaling(subscription) == {
            "type": "replica_scaled",
            "model": "m",
            "replica": 1,
            "direction": "up",
            "reason": "queue",
            "detail": "requests waited 0.05s on every replica",
        }


async def test_an_extra_replica_idling_out_is_published_as_a_scale_down(make_replicas: Any) -> None:
    harness = make_replicas(2, {**ELASTIC, "ttl_s": 0.5})
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    subscription = harness.supervisor.events.subscribe(types=[REPLICA_SCALED])
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m"):
        assert (await scaling(subscription))["direction"] == "up"
    down = await scaling(subscription)
    assert (down["replica"], down["direction"], down["reason"]) == (1, "down", "idle")


async def test_a_reload_changing_replicas_publishes_each_replica_added_and_removed(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    subscription = harness.supervisor.events.subscribe(types=[REPLICA_SCALED])
    await harness.supervisor.replace_model(harness.config(replicas=3), restart=False)
    await harness.supervisor.replace_model(harness.config(replicas=1), restart=False)
    published = [await scaling(subscription) for _ in range(3)]
    assert [(e["replica"], e["direction"], e["reason"], e["detail"]) for e in published] == [
        (2, "up", "reload", "replicas = 3"),
        (1, "down", "reload", "replicas = 1"),
        (2, "down", "reload", "replicas = 1"),
    ]


async def test_a_request_let_through_while_its_replica_is_busy_is_served_by_one_with_a_free_slot(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2, {"parallel": 1})
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    conversation = Affinity(prefix=(5, 6))
    async with harness.supervisor.lease("m", affinity=conversation) as first:
        first.ready_now()
        async with harness.supervisor.lease("m", affinity=conversation) as second:
            assert second.actor is first.actor  # its prefix's replica, within the load bound
            assert second.ready_now() is not None and second.actor is not first.actor
    assert [r.in_flight + r.waiting for r in harness.supervisor.status("m").replicas] == [0, 0]


async def test_a_request_queued_on_a_replica_that_crashed_is_served_by_another(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    async with harness.supervisor.lease("m") as lease:
        dead = lease.actor.name
        harness.runtimes[dead].gate = asyncio.Event()  # its restart hangs
        harness.runtimes[dead].crash()
        await eventually(lambda: ModelState.LOADING in harness.states())
        assert lease.ready_now() is not None and lease.actor.name != dead


def test_a_pinned_model_counts_every_replica_against_max_loaded_models() -> None:
    model = {"runtime": "llamacpp", "path": "/nonexistent/m.gguf", "replicas": 2, "pinned": True}
    settings = Settings(models={"m": model}, max_loaded_models=1)
    assert pinned_overflow(settings, lambda kind: kind == "llamacpp") == (
        "models.*.pinned: 2 pinned models and replicas (m) exceed max_loaded_models=1"
    )
