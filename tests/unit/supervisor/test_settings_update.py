"""A config reload's top-level limits reach each model through its mailbox, in order with what it is told.

The actor owns its settings like the rest of its state: a reload sends them, and they decide
from the next message on. So a crash its watcher reported before the reload is judged by the
restart policy in force when it happened, not by one that arrived after it.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import Harness, eventually

pytestmark = pytest.mark.timeout(30)


async def loaded_and_watched(make_harness: MakeHarness) -> Harness:
    """Model ``m`` serving, with up to five restarts, and its watcher waiting for the child to go down."""
    harness = make_harness(["m"], restart_max_attempts=5)
    await harness.supervisor.load("m")
    await eventually(lambda: harness.runtimes["m"].watchers == 1)
    return harness


def without_restarts(harness: Harness) -> None:
    """Reload with ``restart_max_attempts = 0`` (the supervisor's part of a config reload)."""
    harness.supervisor.update_settings(harness.settings.model_copy(update={"restart_max_attempts": 0}))


async def test_a_crash_reported_before_a_reload_is_judged_by_the_policy_in_force_when_it_was_reported(
    make_harness: MakeHarness,
) -> None:
    harness = await loaded_and_watched(make_harness)

    harness.runtimes["m"].crash()
    # Runs right after the watcher has sent Crashed, before the actor's task reads it.
    asyncio.get_running_loop().call_soon(without_restarts, harness)
    await eventually(lambda: harness.supervisor.status("m").restarts == 1 or harness.state("m") == "failed")

    assert harness.state("m") in ("loading", "loaded"), harness.supervisor.status("m").reason


async def test_a_reload_decides_the_next_crash(make_harness: MakeHarness) -> None:
    harness = await loaded_and_watched(make_harness)

    without_restarts(harness)
    harness.runtimes["m"].crash()
    await eventually(lambda: harness.state("m") == "failed")

    assert "restart_max_attempts = 0" in (harness.supervisor.status("m").reason or "")
