"""The app's shutdown: a config reload still running when the app stops is cancelled and awaited.

The lifespan closes the supervisor right after its reload triggers (SIGHUP, the file watcher)
end: a reload that was merely cancelled, not awaited, would still be unwinding - handing its
models' changes to their actors - while the supervisor shuts them down.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from inference_service.config import ModelConfig
from inference_service.router.app import _reload_triggers, create_app
from inference_service.router.config_reload import ConfigReloader, ConfigSource
from inference_service.supervisor import Supervisor
from tests.support.configs import eventually, write_config
from tests.unit.supervisor.fakes import FakeRuntime, Harness

MODELS = ["kept", "removed"]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    """Two fake models, both serving; closed (the removed one's stop let through) after the test."""
    made = Harness(MODELS, usage_db=tmp_path / "usage.db")
    await made.supervisor.start()
    yield made
    gate = made.runtimes["removed"].stop_gate
    if gate is not None:
        gate.set()
    await made.supervisor.close()


@pytest.fixture
def reloader(harness: Harness, tmp_path: Path) -> Iterator[ConfigReloader]:
    """The app's own reloader over the harness's started supervisor; its config file keeps only ``kept``."""
    config = write_config(tmp_path / "config.toml", {"kept": {"runtime": "remote", "url": "http://fake/kept"}})

    def runtime(model: ModelConfig) -> FakeRuntime:
        return harness.runtimes[model.id]

    app = create_app(harness.settings, runtime, ConfigSource(config))
    app.state.services.supervisor = harness.supervisor  # the started one, whose models the reload changes
    assert isinstance(app.state.reloader, ConfigReloader)
    yield app.state.reloader
    logging.getLogger().removeHandler(app.state.log_buffer)  # the lifespan's job, which does not run here


def reload_tasks() -> list[asyncio.Task[object]]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("reload:")]


async def test_leaving_the_reload_triggers_awaits_the_reloads_they_cancel(
    harness: Harness, reloader: ConfigReloader
) -> None:
    harness.runtimes["removed"].stop_gate = asyncio.Event()  # the reload's removal hangs in its stop
    supervisor: Supervisor = harness.supervisor

    async with _reload_triggers(reloader, watch=True):
        os.kill(os.getpid(), signal.SIGHUP)
        await eventually(lambda: "removed" not in supervisor.model_ids and harness.runtimes["removed"].stopping)
        running = reload_tasks()
        assert sorted(task.get_name() for task in running) == ["reload:SIGHUP", "reload:watch"]

    assert [task.get_name() for task in running if not task.done()] == []
