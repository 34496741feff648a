"""Each replica's process measured on its own: the memory watch checks every one against its estimate, and
the model card sums their memory while listing each (the fake runtimes stand in for the processes; the
estimates are real, read from the SmolLM2 file's header)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference_service.config import ModelConfig, Settings
from inference_service.events import MEMORY_WARNING
from inference_service.router.api.models import replica_cards
from inference_service.router.observability.memory import MemoryWatch
from inference_service.supervisor import Supervisor
from inference_service.supervisor.footprint import model_estimate_mb
from tests.support.configs import SMOLLM2_FILE
from tests.unit.supervisor.fakes import FakeRuntime

MODEL = {"runtime": "llamacpp", "path": str(SMOLLM2_FILE), "replicas": 2, "ctx_size": 512}
SETTINGS = Settings(models={"m": MODEL})
#: Each replica's estimate: what the capacity scheduler counts for one process of the model.
ESTIMATE_MB = model_estimate_mb(SETTINGS, SETTINGS.models["m"])


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[Supervisor, dict[str, FakeRuntime]]]:
    """A supervisor whose model ``m`` runs two loaded replicas, pids 100 and 101, each a little under its estimate."""
    runtimes: dict[str, FakeRuntime] = {}

    def runtime(config: ModelConfig) -> FakeRuntime:
        made = runtimes[config.replica_name] = FakeRuntime(config.replica_name)
        made.pid = 100 + (config.replica_index or 0)
        return made

    supervisor = Supervisor(SETTINGS, runtime)
    await supervisor.start()
    await supervisor.load("m")
    for fake in runtimes.values():
        fake.rss_mb = ESTIMATE_MB - 1.0
    yield supervisor, runtimes
    await supervisor.close()


async def test_the_memory_watch_reports_a_replica_past_its_estimate_that_is_not_the_leading_one(
    replicas: tuple[Supervisor, dict[str, FakeRuntime]],
) -> None:
    supervisor, runtimes = replicas
    runtimes["m#1"].rss_mb = ESTIMATE_MB + 1000.0
    subscription = supervisor.events.subscribe(types=[MEMORY_WARNING])
    MemoryWatch(supervisor).check()
    event, _ = await asyncio.wait_for(subscription.next(), timeout=1.0)  # published by check() itself
    assert (event.model, event.data["replica"], event.data["pid"], event.data["rss_mb"]) == (
        "m",
        1,
        101,
        ESTIMATE_MB + 1000.0,
    )


async def test_the_model_card_sums_its_replicas_memory_and_lists_each(
    replicas: tuple[Supervisor, dict[str, FakeRuntime]],
) -> None:
    supervisor, _ = replicas
    status = supervisor.status("m")
    listed = replica_cards(status)["replicas"]
    assert [(replica["rss_mb"], replica["footprint_mb"]) for replica in listed] == [
        (ESTIMATE_MB - 1.0, ESTIMATE_MB)
    ] * 2
    assert (status.rss_mb, status.footprint_mb) == (2 * (ESTIMATE_MB - 1.0), 2 * ESTIMATE_MB)
