"""A reload that lowers ``replicas``: the replicas it takes out are stopped whatever becomes of the reload,
and the reload's other changes do not wait for them to drain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from inference_service.config import ModelConfig, Settings
from inference_service.supervisor import ModelState, Supervisor
from inference_service.supervisor import reload as model_reload
from inference_service.supervisor.errors import SupervisorError
from tests.unit.supervisor.fakes import FakeRuntime, eventually

pytestmark = pytest.mark.timeout(30)


def new_runtimes(harness: Any, **attributes: Any) -> None:
    """From now on the harness's runtimes (a restarting reload's) are made with ``attributes`` set."""
    make_runtime = harness.supervisor._runtime_factory

    def made(config: ModelConfig) -> FakeRuntime:
        runtime: FakeRuntime = make_runtime(config)
        for name, value in attributes.items():
            setattr(runtime, name, value)
        return runtime

    harness.supervisor._runtime_factory = made


async def test_a_replica_removed_by_a_reload_whose_new_settings_fail_to_load_is_still_stopped(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    removed = harness.runtimes["m#1"]
    new_runtimes(harness, healthy=False)  # the new launch settings do not start
    with pytest.raises(SupervisorError):
        await harness.supervisor.replace_model(harness.config(replicas=1, ctx_size=1024), restart=True)
    await eventually(lambda: not removed.running)


async def test_a_replica_removed_by_a_reload_that_is_cancelled_is_still_stopped(make_replicas: Any) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    await harness.supervisor.load("m")
    removed = harness.runtimes["m#1"]
    new_runtimes(harness, gate=asyncio.Event())  # the restarted replica's start hangs
    reloading = asyncio.create_task(
        harness.supervisor.replace_model(harness.config(replicas=1, ctx_size=1024), restart=True)
    )
    await eventually(lambda: any(runtime.starting for runtime in harness.runtimes.values()))
    reloading.cancel()  # the service shuts down half-way through the reload
    await eventually(lambda: not removed.running)


async def test_a_request_queued_on_a_replica_a_reload_removes_is_served_by_one_that_stays(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    starting = asyncio.Event()
    for runtime in harness.runtimes.values():
        runtime.gate = starting  # both replicas are still loading when the reload comes

    async def request() -> str:
        async with harness.supervisor.lease("m") as lease:
            return (await lease.ready()).base_url

    requests = [asyncio.create_task(request()) for _ in range(2)]  # one queued on each replica
    await eventually(lambda: harness.states() == [ModelState.LOADING] * 2)
    await harness.supervisor.replace_model(harness.config(replicas=1), restart=False)
    starting.set()
    assert await asyncio.gather(*requests) == [harness.runtimes["m#0"].endpoint.base_url] * 2


async def test_a_request_leased_on_a_replica_a_reload_removes_is_served_by_one_that_stays_though_none_serves(
    make_replicas: Any,
) -> None:
    harness = make_replicas(2)
    await harness.supervisor.start()
    async with harness.supervisor.lease("m"), harness.supervisor.lease("m") as lease:
        assert lease.actor.name == "m#1"  # the least loaded replica, neither serving yet
        await harness.supervisor.replace_model(harness.config(replicas=1), restart=False)
        assert await lease.ready() == harness.runtimes["m#0"].endpoint


async def test_a_reload_raising_replicas_names_replica_0_by_its_index(make_replicas: Any) -> None:
    harness = make_replicas(1)
    await harness.supervisor.start()
    await harness.supervisor.replace_model(harness.config(replicas=2), restart=False)
    assert [actor.name for actor in harness.supervisor._get("m").actors] == ["m#0", "m#1"]


async def test_a_reload_applies_other_models_changes_while_a_removed_replica_still_drains() -> None:
    runtimes: dict[str, FakeRuntime] = {}

    def make_runtime(config: ModelConfig) -> FakeRuntime:
        runtimes[config.replica_name] = FakeRuntime(config.replica_name)
        return runtimes[config.replica_name]

    model = {"runtime": "llamacpp", "path": "/nonexistent/m.gguf"}
    old = Settings(models={"a": {**model, "replicas": 2}, "b": {**model, "ttl_s": 60}})
    new = Settings(models={"a": {**model, "replicas": 1}, "b": {**model, "ttl_s": 5}})
    supervisor = Supervisor(old, make_runtime)
    stopping = runtimes["a#1"].stop_gate = asyncio.Event()  # its drain, KV save and stop take a while
    try:
        await supervisor.start()
        await supervisor.load("a")
        applying = asyncio.create_task(model_reload.apply(supervisor, new, model_reload.plan(old, new)))
        await eventually(lambda: supervisor._get("b").config.ttl_s == 5)
        assert runtimes["a#1"].stopping == 1  # still stopping: b's change did not wait for it
        await applying
    finally:
        stopping.set()
        await supervisor.close()
