"""The garbage collector is tuned in one place, the server's start-up (serving/server.py):
an app's lifespan leaves the collector of the process hosting it alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from inference_service.config import ModelConfig
from inference_service.router.app import create_app
from tests.unit.supervisor.fakes import FakeRuntime, Harness


@pytest.fixture
def collector_restored() -> Iterator[None]:
    """Whatever the test does to this process's collector is undone afterwards."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("collector_restored")
async def test_the_apps_lifespan_leaves_the_process_garbage_collector_alone() -> None:
    harness = Harness(["a"])

    def runtime(config: ModelConfig) -> FakeRuntime:
        return harness.runtimes[config.id]

    app = create_app(harness.settings, runtime)
    before = (gc.get_threshold(), gc.get_freeze_count())
    async with app.router.lifespan_context(app):
        during = (gc.get_threshold(), gc.get_freeze_count())
    assert during == before
