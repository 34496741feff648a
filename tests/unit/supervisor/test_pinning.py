"""Pinned models: never evicted for capacity or idle TTL, and the room they hold is counted as taken."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.config import Settings
from inference_service.runtimes.factory import holds_capacity
from inference_service.supervisor import InsufficientCapacity
from inference_service.supervisor.capacity import Candidate, choose_evictions, pinned_overflow
from inference_service.supervisor.footprint import estimate_mb
from tests.support.configs import SMOLLM2_FILE, smollm2
from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)

PINNED = {"pinned": {"pinned": True}}


def test_the_least_recently_used_model_is_not_chosen_when_it_is_pinned() -> None:
    candidates = [Candidate("pinned", 500, idle_since=1, pinned=True), Candidate("a", 500, 2), Candidate("b", 500, 3)]
    chosen = choose_evictions(
        candidates, resident_count=3, resident_mb=1500, need_mb=500, max_models=None, budget_mb=1500
    )
    assert chosen is not None and [c.model_id for c in chosen] == ["a"]


def test_no_choice_when_only_evicting_a_pinned_model_would_make_room() -> None:
    candidates = [Candidate("pinned", 900, idle_since=1, pinned=True), Candidate("a", 100, 2)]
    chosen = choose_evictions(
        candidates, resident_count=2, resident_mb=1000, need_mb=500, max_models=None, budget_mb=1000
    )
    assert chosen is None


async def test_a_capacity_squeeze_evicts_the_other_idle_models_and_keeps_the_pinned_one(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["pinned", "a", "b", "c"], max_loaded_models=2, model_options=PINNED)
    supervisor = harness.supervisor
    for model_id in ("pinned", "a", "b"):  # pinned is the least recently used each time
        await supervisor.load(model_id)
    await supervisor.load("c")
    assert {m: harness.state(m) for m in ("pinned", "a", "b", "c")} == {
        "pinned": "loaded",
        "a": "unloaded",
        "b": "unloaded",
        "c": "loaded",
    }


async def test_a_model_that_only_fits_if_a_pinned_one_left_is_refused_at_once(make_harness: MakeHarness) -> None:
    harness = make_harness(["pinned", "a"], max_loaded_models=1, model_options=PINNED)
    await harness.supervisor.load("pinned")
    with pytest.raises(InsufficientCapacity, match=r"beside the pinned models \['pinned'\]"):
        await harness.supervisor.ensure_ready("a")
    assert harness.state("pinned") == "loaded"


async def test_a_busy_pinned_model_never_yields_to_a_waiting_one(make_harness: MakeHarness) -> None:
    harness = make_harness(["pinned", "a", "b"], max_loaded_models=2, swap_max_wait_s=0, model_options=PINNED)
    supervisor = harness.supervisor
    await supervisor.load("pinned")  # the least recently used of the two busy models
    await supervisor.load("a")
    async with supervisor.lease("pinned") as pinned_request:
        await pinned_request.ready()
        async with supervisor.lease("a") as a_request:
            await a_request.ready()
            b_ready = asyncio.create_task(supervisor.ensure_ready("b"))
            await eventually(lambda: supervisor._get("a").primary.closed)  # a yields at once (swap_max_wait_s = 0)
            assert not supervisor._get("pinned").primary.closed
        assert (await asyncio.wait_for(b_ready, 5)).model_name == "b"
    assert (harness.state("pinned"), harness.state("a")) == ("loaded", "unloaded")


async def test_the_idle_ttl_never_unloads_a_pinned_model(make_harness: MakeHarness) -> None:
    options = {"pinned": {"pinned": True, "ttl_s": 0.01}, "witness": {"ttl_s": 0.01}}
    harness = make_harness(["pinned", "witness"], model_options=options)
    supervisor = harness.supervisor
    await supervisor.start()  # the TTL reaper, and the start-up probe of (fake) remote models
    await supervisor.load("pinned")
    await supervisor.load("witness")
    await eventually(lambda: harness.state("witness") == "unloaded", timeout_s=5)  # the reaper has run since
    assert harness.state("pinned") == "loaded"
    assert supervisor.status("pinned").idle_ttl_s is None


async def test_a_requests_keep_alive_does_not_unload_a_pinned_model(make_harness: MakeHarness) -> None:
    harness = make_harness(["pinned"], model_options=PINNED)
    await harness.supervisor.load("pinned")
    harness.supervisor.keep_alive("pinned", 0.0)
    await settle()
    assert harness.supervisor.status("pinned").idle_ttl_s is None


async def test_an_explicit_unload_stops_a_pinned_model(make_harness: MakeHarness) -> None:
    harness = make_harness(["pinned"], model_options=PINNED)
    await harness.supervisor.load("pinned")
    await harness.supervisor.unload("pinned")
    assert harness.state("pinned") == "unloaded"


def pinned_settings(count: int, **top_level: object) -> Settings:
    models = {f"p{i}": smollm2(pinned=True, cache_ram_mb=0) for i in range(count)}
    remote = {"far": {"runtime": "remote", "url": "http://127.0.0.1:1", "pinned": True}}
    return Settings.model_validate({"models": {**models, **remote}, **top_level})


def test_pinned_models_within_the_limits_are_accepted() -> None:
    one_mb = estimate_mb(SMOLLM2_FILE, 512)
    assert pinned_overflow(pinned_settings(2, max_loaded_models=2, memory_budget_mb=2 * one_mb), holds_capacity) is None


def test_more_pinned_models_than_max_loaded_models_is_named() -> None:
    overflow = pinned_overflow(pinned_settings(3, max_loaded_models=2), holds_capacity)
    assert overflow == "models.*.pinned: 3 pinned models (p0, p1, p2) exceed max_loaded_models=2"  # far: not local


def test_pinned_models_over_the_memory_budget_are_named_with_the_schedulers_estimate() -> None:
    one_mb = estimate_mb(SMOLLM2_FILE, 512)
    overflow = pinned_overflow(pinned_settings(2, memory_budget_mb=2 * one_mb - 1), holds_capacity)
    assert overflow == (
        f"models.*.pinned: the pinned models (p0, p1) need ~{2 * one_mb} MB, more than memory_budget_mb={2 * one_mb - 1}"
    )


async def test_a_model_unpinned_by_a_reload_may_be_evicted_at_once(make_harness: MakeHarness) -> None:
    harness = make_harness(["pinned", "a"], max_loaded_models=1, model_options=PINNED)
    supervisor = harness.supervisor
    await supervisor.load("pinned")
    unpinned = harness.settings.models["pinned"].model_copy(update={"pinned": False})

    await supervisor.replace_model(unpinned, restart=False)

    assert (await asyncio.wait_for(supervisor.ensure_ready("a"), 5)).model_name == "a"
    assert harness.state("pinned") == "unloaded"
