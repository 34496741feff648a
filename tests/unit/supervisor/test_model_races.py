"""Regression tests for the races the single-owner rebuild makes impossible (issue #13, part 0).

Each test drives fake runtimes through the interleaving a code review reproduced on the
old supervisor, and checks the outcome the actor design guarantees.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

import pytest

from inference_service.events import MODEL_STATE, Event
from inference_service.supervisor import ModelState, ModelUnavailable
from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import eventually, settle, task_errors

pytestmark = pytest.mark.timeout(30)

#: Recovery probes of a backend that stays down, counted to tell one probing loop from several.
PROBES = 20


def no_supervisor_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "supervisor" in r.name]


async def test_failed_loads_of_a_remote_model_leave_one_recovery_loop(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness(["remote"], local=False, self_healing=True)
    runtime = harness.runtimes["remote"]
    runtime.healthy = False
    for _ in range(5):
        with pytest.raises(ModelUnavailable, match="backend down"):
            await harness.supervisor.load("remote")

    interval_s = harness.settings.runtimes.remote.health_interval_s
    before = len(runtime.start_calls)
    started = time.monotonic()
    await eventually(lambda: len(runtime.start_calls) - before >= PROBES)
    elapsed = time.monotonic() - started

    # One loop sleeps an interval before each probe; five loops would make these probes ~5x faster.
    assert elapsed >= (PROBES - 1) * interval_s, elapsed
    assert runtime.max_starting == 1


async def test_probe_recovering_during_an_explicit_load_gives_the_caller_the_endpoint(
    make_harness: MakeHarness,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness = make_harness(["remote"], local=False, self_healing=True)
    runtime = harness.runtimes["remote"]
    runtime.healthy = False
    with pytest.raises(ModelUnavailable):
        await harness.supervisor.load("remote")
    # The backend comes back while an explicit load's probe is still in the air.
    runtime.healthy = True
    runtime.gate = asyncio.Event()
    with task_errors() as errors:
        load = asyncio.create_task(harness.supervisor.load("remote"))
        await eventually(lambda: runtime.starting == 1)
        # Several recovery intervals pass while that probe hangs: a loop still running would probe meanwhile.
        await asyncio.sleep(5 * harness.settings.runtimes.remote.health_interval_s)
        runtime.gate.set()
        endpoint = await load
        await settle()
        gc.collect()

    assert endpoint.model_name == "remote"
    assert harness.state("remote") == "loaded"
    assert runtime.max_starting == 1  # the explicit load replaced the recovery loop: never two probes at once
    assert errors == [] and no_supervisor_errors(caplog) == []


async def test_a_stale_start_result_from_an_earlier_generation_is_dropped(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    runtime = harness.runtimes["m"]
    runtime.gate = asyncio.Event()
    first = asyncio.create_task(harness.supervisor.load("m"))
    await eventually(lambda: runtime.starting == 1)
    generation = harness.supervisor.status("m").generation
    await harness.supervisor.unload("m")  # calls the first start off
    with pytest.raises(ModelUnavailable, match="unloaded while it was loading"):
        await first
    second = asyncio.create_task(harness.supervisor.load("m"))
    runtime.gate.set()
    await second

    status = harness.supervisor.status("m")
    assert (status.state, status.generation, status.loads) == (ModelState.LOADED, generation + 1, 1)


async def test_exactly_one_watcher_per_runtime_instance_across_crashes_and_unloads(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], restart_max_attempts=5)
    runtime = harness.runtimes["m"]
    await harness.supervisor.load("m")
    for _ in range(3):
        await eventually(lambda: runtime.watchers == 1)
        runtime.crash()
        await eventually(lambda: harness.state("m") == "loaded" and runtime.running)
    await eventually(lambda: runtime.watchers == 1)
    await harness.supervisor.unload("m")
    await settle()

    assert runtime.max_watchers == 1
    assert runtime.watchers == 0  # cancelled with its instance
    assert harness.supervisor.status("m").restarts == 3


async def test_start_raising_an_unexpected_error_fails_the_model_and_frees_its_capacity(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["broken", "other"], max_loaded_models=1)
    harness.runtimes["broken"].start_error = ValueError("bad argv")

    with pytest.raises(ModelUnavailable, match="ValueError: bad argv"):
        await harness.supervisor.load("broken")

    assert harness.state("broken") == "failed"
    await asyncio.wait_for(harness.supervisor.load("other"), 2)  # the failed load holds no capacity
    assert harness.state("other") == "loaded"


async def test_eviction_and_ttl_agree_a_model_just_reloaded_is_fresh(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "b", "c"], max_loaded_models=2)
    supervisor = harness.supervisor
    for model_id in ("a", "b"):
        await supervisor.load(model_id)
        async with supervisor.lease(model_id) as lease:
            await lease.ready()
        await asyncio.sleep(0.01)  # a's and b's last requests get distinct timestamps
    await supervisor.unload("a")
    await supervisor.load("a")  # POST /load: a's last request is older than b's, but it was loaded just now

    await supervisor.load("c")

    assert (harness.state("a"), harness.state("b")) == ("loaded", "unloaded")


async def test_a_request_waiting_for_its_slot_keeps_its_model_from_being_evicted(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=60)
    supervisor = harness.supervisor
    await supervisor.load("a")
    async with supervisor.lease("a") as queued:  # counted although not yet served
        load_b = asyncio.create_task(supervisor.load("b"))
        await settle()  # b asked for room, the scheduler planned: a is not idle
        assert (harness.state("a"), harness.state("b")) == ("loaded", "unloaded")
        assert await queued.ready()
    await asyncio.wait_for(load_b, 2)

    assert (harness.state("a"), harness.state("b")) == ("unloaded", "loaded")


async def test_shutdown_is_final_no_late_message_revives_a_model(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    runtime = harness.runtimes["m"]
    await harness.supervisor.load("m")
    await eventually(lambda: runtime.watchers == 1)

    await harness.supervisor.close()
    await settle()

    assert harness.state("m") == "shutdown"
    assert runtime.watchers == 0 and not runtime.running
    with pytest.raises(ModelUnavailable, match="shutting down"):
        await harness.supervisor.ensure_ready("m")


async def test_unload_during_a_load_answers_the_waiter_and_stops_the_half_started_runtime(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["m"])
    runtime = harness.runtimes["m"]
    runtime.gate = asyncio.Event()
    waiter = asyncio.create_task(harness.supervisor.ensure_ready("m"))
    await eventually(lambda: runtime.starting == 1)

    await harness.supervisor.unload("m")

    with pytest.raises(ModelUnavailable, match="unloaded while it was loading"):
        await waiter
    assert harness.state("m") == "unloaded" and runtime.stops >= 1 and not runtime.running


async def test_crash_loop_backs_off_then_fails_with_the_streak(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], restart_max_attempts=2)
    runtime = harness.runtimes["m"]
    await harness.supervisor.load("m")
    started = time.monotonic()
    for _ in range(3):  # each restart succeeds, and the child dies again at once
        generation = harness.supervisor.status("m").generation
        await eventually(lambda: runtime.watchers == 1)
        runtime.crash()
        await eventually(
            lambda: (
                harness.state("m") == "failed"
                or (harness.state("m") == "loaded" and harness.supervisor.status("m").generation > generation)
            ),
            timeout_s=5,
        )

    assert harness.state("m") == "failed"
    assert "crashed 3 times in a row" in (harness.supervisor.status("m").reason or "")
    assert time.monotonic() - started >= 0.25  # the second restart waited out its backoff


async def test_restarts_disabled_fail_the_model_at_the_first_crash(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], restart_max_attempts=0)
    runtime = harness.runtimes["m"]
    await harness.supervisor.load("m")
    await eventually(lambda: runtime.watchers == 1)
    runtime.crash("exited with code 9")
    await eventually(lambda: harness.state("m") == "failed")

    assert "not restarted: restart_max_attempts = 0" in (harness.supervisor.status("m").reason or "")
    assert len(runtime.start_calls) == 1


async def test_unload_drains_the_request_in_flight_before_stopping_the_runtime(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], drain_timeout_s=5)
    runtime = harness.runtimes["m"]
    async with harness.supervisor.lease("m") as request:
        await request.ready()
        unloading = asyncio.create_task(harness.supervisor.unload("m"))
        await eventually(lambda: harness.state("m") == "unloading")
        await settle()  # the drain has begun
        assert runtime.running and runtime.stops == 0  # still serving the request
    await asyncio.wait_for(unloading, 1)

    assert harness.state("m") == "unloaded" and not runtime.running


async def test_an_event_listener_that_raises_does_not_strand_a_load(
    make_harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    harness = make_harness(["m"])

    def broken(event: Event) -> None:
        if event.type == MODEL_STATE and event.data["state"] == "loading":
            raise RuntimeError("a bug in a listener")

    harness.supervisor.events.listen(broken)

    await asyncio.wait_for(harness.supervisor.load("m"), 5)

    assert harness.state("m") == "loaded"
    assert harness.supervisor.events.listener_errors == 1
    assert "a bug in a listener" in caplog.text
