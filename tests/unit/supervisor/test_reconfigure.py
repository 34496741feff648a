"""A config reload's changes to a model: nothing queued is dropped, nothing is left running if it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference_service.config import ModelConfig, Settings
from inference_service.events import MODEL_STATE, Subscription
from inference_service.supervisor import ModelState, Supervisor
from inference_service.supervisor.footprint import estimate_mb
from inference_service.supervisor.model import ModelActor
from tests.support.gguf import write_gguf
from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import FakeRuntime, Harness, eventually

pytestmark = pytest.mark.timeout(30)

QUEUED = 4


def changed(harness: Harness, model_id: str, **overrides: object) -> ModelConfig:
    """The model's config with ``overrides`` (a launch setting such as ``parallel`` restarts it)."""
    return harness.settings.models[model_id].model_copy(update=overrides)


def actor(harness: Harness, model_id: str) -> ModelActor:
    return harness.supervisor._get(model_id).primary


async def next_state(states: Subscription, state: str) -> None:
    """Return once a model announces ``state`` (read from the events: whichever actor it is)."""
    while (await asyncio.wait_for(states.next(), 5))[0].data["state"] != state:
        pass


async def test_requests_queued_before_a_restarting_reload_are_served_by_the_new_runtime(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["m"], drain_timeout_s=60)
    supervisor, old = harness.supervisor, harness.runtimes["m"]
    async with contextlib.AsyncExitStack() as stack:
        running = await stack.enter_async_context(supervisor.lease("m"))
        await running.ready()
        queued = [await stack.enter_async_context(supervisor.lease("m")) for _ in range(QUEUED)]
        states = supervisor.events.subscribe(types=[MODEL_STATE])
        reloading = asyncio.create_task(supervisor.replace_model(changed(harness, "m", parallel=4), restart=True))
        await next_state(states, "unloading")  # draining `running`
        waiting = [asyncio.create_task(lease.ready()) for lease in queued]
        running.actor.close_lease(running)  # its response is done: the drain ends
        endpoints = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        await asyncio.wait_for(reloading, 5)

    new = harness.runtimes["m"]
    assert new is not old and not old.running and new.running
    assert endpoints == [new.endpoint] * QUEUED


async def test_a_live_setting_is_applied_in_place_without_touching_the_runtime(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    await harness.supervisor.load("m")
    runtime = harness.runtimes["m"]

    await harness.supervisor.replace_model(changed(harness, "m", ttl_s=600), restart=False)

    assert actor(harness, "m").config.ttl_s == 600
    assert harness.runtimes["m"] is runtime and runtime.running and runtime.stops == 0


async def test_a_restart_while_loading_keeps_the_waiting_request_for_the_new_runtime(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["m"])
    supervisor, old = harness.supervisor, harness.runtimes["m"]
    old.gate = asyncio.Event()  # the old config's start never finishes
    waiting = asyncio.create_task(supervisor.ensure_ready("m"))
    await eventually(lambda: old.starting == 1)

    await asyncio.wait_for(supervisor.replace_model(changed(harness, "m", ctx_size=1024), restart=True), 5)
    endpoint = await asyncio.wait_for(waiting, 5)

    assert endpoint == harness.runtimes["m"].endpoint and not old.running


async def test_close_stops_a_model_whose_removal_was_cancelled_while_it_drained(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], drain_timeout_s=60)
    supervisor, runtime = harness.supervisor, harness.runtimes["m"]
    model = actor(harness, "m")
    async with supervisor.lease("m") as request:
        await request.ready()
        removing = asyncio.create_task(supervisor.remove_model("m"))
        await eventually(lambda: model.state == ModelState.UNLOADING)  # draining the request
        removing.cancel()  # a reload called off (a client gone, a shutdown)
        await asyncio.gather(removing, return_exceptions=True)

        await asyncio.wait_for(supervisor.close(), 5)

        assert not runtime.running and model.state == ModelState.SHUTDOWN


async def test_close_stops_the_old_runtime_of_a_restart_cancelled_while_it_drained(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"], drain_timeout_s=60)
    supervisor, old = harness.supervisor, harness.runtimes["m"]
    states = supervisor.events.subscribe(types=[MODEL_STATE])
    async with supervisor.lease("m") as request:
        await request.ready()
        restarting = asyncio.create_task(supervisor.replace_model(changed(harness, "m", parallel=4), restart=True))
        await next_state(states, "unloading")  # draining the request
        restarting.cancel()  # a reload called off (a client gone, a shutdown)
        await asyncio.gather(restarting, return_exceptions=True)

        await asyncio.wait_for(supervisor.close(), 5)

        assert not old.running


@pytest.fixture
async def measured_model(tmp_path: Path) -> AsyncIterator[tuple[Supervisor, Path]]:
    """A supervisor under a memory budget over one real GGUF header (Gemma 3's vocabulary size: a
    read that takes a while) and a fake runtime; closed at teardown."""
    metadata = {
        "general.architecture": "llama",
        "tokenizer.ggml.tokens": [f"token-{index}" for index in range(262_144)],
        "llama.block_count": 30,
        "llama.attention.head_count": 9,
        "llama.embedding_length": 576,
    }
    path = write_gguf(tmp_path / "model.gguf", metadata)
    settings = Settings(memory_budget_mb=100_000, models={"m": {"path": str(path), "ctx_size": 512}})
    supervisor = Supervisor(settings, lambda config: FakeRuntime(config.id))
    yield supervisor, path
    await supervisor.close()


async def test_a_footprint_measured_for_the_old_config_is_not_kept_after_a_restart(
    measured_model: tuple[Supervisor, Path],
) -> None:
    """The header is read in a thread; a reload that restarts the model with another ctx_size meanwhile
    must not leave the old config's estimate behind (it decides evictions and 507s)."""
    supervisor, path = measured_model
    ready = asyncio.create_task(supervisor.ensure_ready("m"))  # measures the footprint first, in a thread
    await asyncio.sleep(0)  # the read has begun
    bigger = supervisor._get("m").config.model_copy(update={"ctx_size": 32768})
    await supervisor.replace_model(bigger, restart=True)
    await asyncio.wait_for(ready, 10)

    cache_ram_mb = bigger.cache_ram_mb
    assert supervisor.status("m").footprint_mb == estimate_mb(path, 32768, cache_ram_mb) != estimate_mb(path, 512)
