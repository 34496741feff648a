"""Fixtures for the supervisor's unit tests: every supervisor made is closed, and leaves no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from tests.unit.supervisor.fakes import Harness

#: The names of the tasks a supervisor starts (see mailbox, effects and supervisor modules).
SUPERVISOR_TASKS = ("model:", "operation:", "watch:", "supervisor:")

MakeHarness = Callable[..., Harness]


def supervisor_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if task.get_name().startswith(SUPERVISOR_TASKS)}


@pytest.fixture
async def make_harness() -> AsyncIterator[MakeHarness]:
    """``make_harness(models, **settings)``: a :class:`Harness`; closed at teardown, whatever the test did.

    Teardown then checks that closing left nothing running: every task the supervisors
    started during the test ends (a leaked actor, operation or watcher fails the test).
    """
    before = supervisor_tasks()
    made: list[Harness] = []

    def make(models: Sequence[str], **options: Any) -> Harness:
        harness = Harness(models, **options)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        await asyncio.wait_for(harness.supervisor.close(), 5)
    started = supervisor_tasks() - before
    if started:
        await asyncio.wait(started, timeout=5)
    assert [task.get_name() for task in started if not task.done()] == []
