"""The operation runner alone: one piece of work at a time, and nobody starts while a predecessor cleans up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from inference_service.supervisor.effects import SingleFlight
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)


class Scene:
    """A runner and a log of what its work did; each piece of work runs until called off, then
    takes its time to clean up (e.g. stopping the child it spawned) until ``release`` is set."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.release = asyncio.Event()
        self.runner = SingleFlight("operation:test", serial=True)

    def start(self, name: str) -> None:
        self.runner.start(lambda: self._work(name))

    async def _work(self, name: str) -> None:
        self.log.append(f"{name} runs")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()
            self.log.append(f"{name} cleaned up")
            raise


@pytest.fixture
async def scene() -> AsyncIterator[Scene]:
    """A first operation running, called off by a second: the first is cleaning up until released."""
    scene = Scene()
    scene.start("first")
    await eventually(lambda: scene.log == ["first runs"])
    scene.start("second")  # calls first off; waits for its clean-up
    yield scene
    scene.release.set()
    await asyncio.wait_for(scene.runner.stop(), 5)


async def test_a_new_operation_waits_for_every_earlier_one_even_one_called_off_before_it_ran(scene: Scene) -> None:
    scene.start("third")  # calls second off before it ever ran
    await settle()
    assert scene.log == ["first runs"]  # first still cleaning up: third must not begin beside it
    scene.release.set()
    await eventually(lambda: "third runs" in scene.log)
    assert scene.log == ["first runs", "first cleaned up", "third runs"]


async def test_stop_returns_only_when_every_operation_called_off_has_cleaned_up(scene: Scene) -> None:
    stopping = asyncio.create_task(scene.runner.stop())
    await settle()
    assert not stopping.done()  # the first is still cleaning up
    scene.release.set()
    await asyncio.wait_for(stopping, 5)
    assert scene.log == ["first runs", "first cleaned up"]
