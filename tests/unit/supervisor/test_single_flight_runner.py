"""The operation runner alone: one piece of work at a time, and nobody starts while a predecessor cleans up."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.supervisor.effects import SingleFlight
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)


class Work:
    """A piece of work that runs until called off, then takes its time to clean up (until ``release``)."""

    def __init__(self, log: list[str], name: str, release: asyncio.Event) -> None:
        self.log, self.name, self.release = log, name, release

    async def __call__(self) -> None:
        self.log.append(f"{self.name} runs")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()  # e.g. stopping the child it spawned
            self.log.append(f"{self.name} cleaned up")
            raise


async def test_a_new_operation_waits_for_every_earlier_one_even_one_called_off_before_it_ran() -> None:
    log: list[str] = []
    release = asyncio.Event()
    runner = SingleFlight("operation:test", serial=True)
    runner.start(Work(log, "first", release))
    await asyncio.sleep(0)
    runner.start(Work(log, "second", release))  # calls first off; waits for its clean-up
    runner.start(Work(log, "third", release))  # calls second off before it ever ran
    await settle()
    assert log == ["first runs"]  # first still cleaning up: third must not begin beside it
    release.set()
    await eventually(lambda: "third runs" in log)
    assert log == ["first runs", "first cleaned up", "third runs"]
    await runner.stop()


async def test_stop_returns_only_when_every_operation_called_off_has_cleaned_up() -> None:
    log: list[str] = []
    release = asyncio.Event()
    runner = SingleFlight("operation:test", serial=True)
    runner.start(Work(log, "first", release))
    await asyncio.sleep(0)
    runner.start(Work(log, "second", release))
    stopping = asyncio.create_task(runner.stop())
    await settle()
    assert not stopping.done()  # the first is still cleaning up
    release.set()
    await asyncio.wait_for(stopping, 2)
    assert log == ["first runs", "first cleaned up"]
