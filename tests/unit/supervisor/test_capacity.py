"""Capacity: which models are evicted for whom, and who waits instead of being refused."""

from __future__ import annotations

import asyncio
import time

import pytest

from inference_service.supervisor import InsufficientCapacity
from inference_service.supervisor.capacity import Candidate, choose_evictions
from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)


def ids(chosen: list[Candidate] | None) -> list[str] | None:
    return None if chosen is None else sorted(c.model_id for c in chosen)


def budget_choice(
    candidates: list[Candidate], need_mb: int, budget_mb: int, max_models: int | None = None
) -> list[str] | None:
    resident_mb = sum(c.footprint_mb for c in candidates)
    return ids(
        choose_evictions(
            candidates,
            resident_count=len(candidates),
            resident_mb=resident_mb,
            need_mb=need_mb,
            max_models=max_models,
            budget_mb=budget_mb,
        )
    )


def test_one_big_idle_model_is_evicted_rather_than_several_small_ones() -> None:
    # 1,000 MB free needed: the big model alone frees it, the two small ones would be two evictions.
    candidates = [Candidate("big", 1200, idle_since=300), Candidate("s1", 600, 100), Candidate("s2", 600, 200)]
    assert budget_choice(candidates, need_mb=1000, budget_mb=2400) == ["big"]


def test_equal_counts_are_broken_by_least_recently_used() -> None:
    candidates = [Candidate("recent", 800, idle_since=500), Candidate("old", 800, 100), Candidate("older", 900, 50)]
    assert budget_choice(candidates, need_mb=700, budget_mb=2500) == ["older"]


def test_a_small_model_that_does_not_free_enough_is_not_chosen_even_if_it_is_the_oldest() -> None:
    candidates = [Candidate("tiny-old", 100, idle_since=1), Candidate("big-new", 2000, 900)]
    assert budget_choice(candidates, need_mb=1500, budget_mb=2600) == ["big-new"]


def test_two_evictions_when_no_single_one_frees_enough() -> None:
    candidates = [Candidate("a", 500, 10), Candidate("b", 500, 20), Candidate("c", 400, 5)]
    # a+c frees exactly enough and holds the two least recently used: preferred over a+b or b+c.
    assert budget_choice(candidates, need_mb=1000, budget_mb=1500) == ["a", "c"]


def test_nothing_is_evicted_when_the_model_already_fits() -> None:
    assert budget_choice([Candidate("a", 500, 10)], need_mb=100, budget_mb=1000) == []


def test_no_choice_when_even_evicting_every_idle_model_is_not_enough() -> None:
    # 500 MB belong to a busy model that is not a candidate.
    chosen = choose_evictions(
        [Candidate("a", 100, 10)], resident_count=2, resident_mb=600, need_mb=600, max_models=None, budget_mb=1000
    )
    assert chosen is None


def test_the_count_limit_and_the_memory_budget_both_hold() -> None:
    candidates = [Candidate("a", 100, 10), Candidate("b", 900, 20), Candidate("c", 100, 30)]
    # Memory alone needs b out; the count limit needs one (max 3) or two (max 2) out.
    assert budget_choice(candidates, need_mb=500, budget_mb=1200, max_models=3) == ["b"]
    assert budget_choice(candidates, need_mb=500, budget_mb=1200, max_models=2) == ["a", "b"]  # a: older than c
    assert budget_choice(candidates, need_mb=500, budget_mb=1200, max_models=1) == ["a", "b", "c"]


def test_many_candidates_use_the_greedy_choice_and_still_free_enough() -> None:
    candidates = [Candidate(f"m{i:02}", 100 + i, idle_since=i) for i in range(20)]
    chosen = budget_choice(candidates, need_mb=300, budget_mb=sum(c.footprint_mb for c in candidates))
    assert chosen == ["m17", "m18", "m19"]  # the largest first, until enough is free


async def test_a_request_for_a_model_whose_room_is_held_by_a_busy_one_waits_then_loads(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=60)
    supervisor = harness.supervisor
    async with supervisor.lease("a") as busy:
        await busy.ready()
        waiting = asyncio.create_task(supervisor.ensure_ready("b"))
        await settle()  # b asked for room, the scheduler planned
        assert not waiting.done() and harness.state("b") == "unloaded"  # waits: no 507
    endpoint = await asyncio.wait_for(waiting, 5)

    assert endpoint.model_name == "b"
    assert (harness.state("a"), harness.state("b")) == ("unloaded", "loaded")


async def test_a_model_that_can_never_fit_is_refused_at_once(make_harness: MakeHarness) -> None:
    harness = make_harness(["a"], max_loaded_models=0)
    with pytest.raises(InsufficientCapacity, match="max_loaded_models = 0"):
        await harness.supervisor.ensure_ready("a")


async def test_the_waiting_model_gets_its_turn_after_swap_max_wait_s_even_if_the_other_stays_busy(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=0.2)
    supervisor = harness.supervisor
    await supervisor.load("a")

    async def request_a() -> None:
        async with supervisor.lease("a") as lease:
            await lease.ready()
            await asyncio.sleep(0.05)

    requests = [asyncio.create_task(request_a())]
    await eventually(lambda: supervisor._get("a").primary.in_flight == 1)
    waited = asyncio.get_running_loop().time()
    b_ready = asyncio.create_task(supervisor.ensure_ready("b"))
    while not b_ready.done() and len(requests) < 200:  # a new request for a every 20 ms: a is never idle by itself
        requests.append(asyncio.create_task(request_a()))
        await asyncio.sleep(0.02)
    endpoint = await asyncio.wait_for(b_ready, 5)  # its turn came, not never
    waited = asyncio.get_running_loop().time() - waited
    for task in requests:
        task.cancel()
    await asyncio.gather(*requests, return_exceptions=True)

    assert endpoint.model_name == "b"
    assert waited >= 0.2  # not before swap_max_wait_s


async def test_waiting_models_are_served_by_priority(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "low", "high"], max_loaded_models=1, swap_max_wait_s=60)
    supervisor = harness.supervisor
    order: list[str] = []

    async def use(model_id: str, priority: int) -> None:
        await supervisor.ensure_ready(model_id, priority)
        order.append(model_id)

    async with supervisor.lease("a") as busy:
        await busy.ready()
        low = asyncio.create_task(use("low", 1))
        await settle()  # low is queued for room first
        high = asyncio.create_task(use("high", 3))
        await settle()
    await asyncio.wait_for(asyncio.gather(high, low), 5)
    assert order == ["high", "low"]  # low asked first


async def test_models_that_fit_together_are_prepared_together(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=2)
    for runtime in harness.runtimes.values():
        runtime.gate = asyncio.Event()
    preparing = asyncio.create_task(harness.supervisor.prepare(["a", "b"]))
    # Both at once, not stage by stage (each start hangs until released).
    await eventually(lambda: [harness.state(m) for m in ("a", "b")] == ["loading", "loading"])
    for runtime in harness.runtimes.values():
        runtime.gate.set()
    await asyncio.wait_for(preparing, 5)
    assert [harness.state(m) for m in ("a", "b")] == ["loaded", "loaded"]


async def test_models_that_cannot_be_resident_together_are_not_prepared(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1)
    await asyncio.wait_for(harness.supervisor.prepare(["a", "b"]), 1)
    assert [harness.state(m) for m in ("a", "b")] == ["unloaded", "unloaded"]  # the stages will take turns


async def test_a_yielding_model_serves_again_when_the_model_it_yielded_to_no_longer_waits(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=0)
    supervisor = harness.supervisor
    async with supervisor.lease("a") as busy:
        await busy.ready()
        b_waiting = asyncio.create_task(supervisor.ensure_ready("b"))
        await eventually(lambda: supervisor._get("a").primary.closed)  # a yields at once (swap_max_wait_s = 0)
        async with supervisor.lease("a") as queued:
            assert queued.ready_now() is None
            b_waiting.cancel()  # ... but b's only request gives up
            await asyncio.gather(b_waiting, return_exceptions=True)
            endpoint = await asyncio.wait_for(queued.ready(), 5)

    assert endpoint.model_name == "a" and harness.state("a") == "loaded"


async def test_a_model_that_took_long_to_load_still_gets_its_turn_before_yielding(make_harness: MakeHarness) -> None:
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=0.2)
    supervisor = harness.supervisor
    await supervisor.load("b")
    harness.runtimes["a"].gate = asyncio.Event()
    async with supervisor.lease("a") as request:
        a_ready = asyncio.create_task(request.ready())  # b is idle: evicted for a, whose load is slow
        await eventually(lambda: harness.state("a") == "loading")
        b_ready = asyncio.create_task(supervisor.ensure_ready("b"))  # b is wanted again from now on
        await asyncio.sleep(0.5)  # a's load takes far longer than swap_max_wait_s
        harness.runtimes["a"].gate.set()
        await asyncio.wait_for(a_ready, 5)
        a_actor = supervisor._get("a").primary
        await eventually(lambda: a_actor.closed)  # it yields in the end ...
        # ... but only after a turn of its own, although b had waited longer than that before a was ready.
        assert time.monotonic() - a_actor.serving_since >= 0.2
    await asyncio.wait_for(b_ready, 5)


async def test_a_yielding_model_that_crashes_gets_no_fresh_turn(make_harness: MakeHarness) -> None:
    """A model told to yield, whose child then crashes, is not restarted into a new turn at serving:
    the model it yielded to is loaded first, and its own queued request waits its turn."""
    harness = make_harness(["a", "b"], max_loaded_models=1, swap_max_wait_s=0)
    supervisor = harness.supervisor
    await supervisor.load("a")
    served: list[str] = []
    async with supervisor.lease("a") as queued:
        async with supervisor.lease("a") as busy:
            await busy.ready()
            b_ready = asyncio.create_task(supervisor.ensure_ready("b"))
            b_ready.add_done_callback(lambda _: served.append("b"))
            await eventually(lambda: supervisor._get("a").primary.closed)  # a yields at once (swap_max_wait_s = 0)
            a_ready = asyncio.create_task(queued.ready())
            a_ready.add_done_callback(lambda _: served.append("a"))
            harness.runtimes["a"].crash()
        # The busy request ended with the crash.
        await asyncio.wait_for(b_ready, 5)
        assert not a_ready.done()
        await asyncio.wait_for(a_ready, 5)  # b is idle: a's turn comes next
    assert served == ["b", "a"]
