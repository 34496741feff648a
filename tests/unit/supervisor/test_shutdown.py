"""Closing the supervisor: final, complete, and never leaving a caller hanging or two stops racing."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.supervisor import ModelUnavailable
from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)

#: "At once" for work that awaits nothing but the event loop; generous for a crowded machine.
AT_ONCE_S = 5.0


async def test_unload_after_close_answers_at_once(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    await harness.supervisor.load("m")
    await harness.supervisor.close()

    await asyncio.wait_for(harness.supervisor.unload("m"), AT_ONCE_S)

    assert harness.state("m") == "shutdown" and not harness.runtimes["m"].running


async def test_an_unload_queued_behind_the_shutdown_is_answered(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    runtime = harness.runtimes["m"]
    await harness.supervisor.load("m")
    runtime.stop_gate = asyncio.Event()  # the shutdown's stop takes its time
    closing = asyncio.create_task(harness.supervisor.close())
    await eventually(lambda: runtime.stopping == 1)
    unloading = asyncio.create_task(harness.supervisor.unload("m"))
    await settle()
    runtime.stop_gate.set()

    await asyncio.wait_for(closing, AT_ONCE_S)
    await asyncio.wait_for(unloading, AT_ONCE_S)


async def test_a_load_after_close_is_refused_with_the_reason(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    await harness.supervisor.close()
    with pytest.raises(ModelUnavailable, match="shutting down"):
        await asyncio.wait_for(harness.supervisor.load("m"), AT_ONCE_S)


async def test_shutdown_waits_for_an_earlier_operations_stop_instead_of_stopping_beside_it(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["m"])
    runtime = harness.runtimes["m"]
    runtime.gate = asyncio.Event()  # the start hangs between spawn and ready
    loading = asyncio.create_task(harness.supervisor.load("m"))
    await eventually(lambda: runtime.starting == 1)
    runtime.stop_gate = asyncio.Event()
    # The unload calls the start off - whose clean-up stops the half-started child (and hangs
    # there) - and queues its own stop behind it; then the supervisor closes.
    unloading = asyncio.create_task(harness.supervisor.unload("m"))
    await eventually(lambda: runtime.stopping == 1)
    closing = asyncio.create_task(harness.supervisor.close())
    await settle()
    runtime.stop_gate.set()
    await asyncio.wait_for(closing, AT_ONCE_S)

    assert runtime.max_stopping == 1  # never two stops of one runtime at once
    await asyncio.wait_for(unloading, AT_ONCE_S)
    with pytest.raises(ModelUnavailable, match="unloaded while it was loading"):
        await loading
