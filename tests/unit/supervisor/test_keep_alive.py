"""A request's keep_alive (Ollama's) sets how long its model stays loaded once idle, until the
model is next unloaded; the TTL reaper acts on it as on the configured ttl_s."""

from __future__ import annotations

import asyncio
import math

import pytest

from tests.unit.supervisor.conftest import MakeHarness
from tests.unit.supervisor.fakes import eventually, settle

pytestmark = pytest.mark.timeout(30)


async def test_keep_alive_zero_unloads_the_model_once_its_request_is_done(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    supervisor = harness.supervisor
    await supervisor.start()  # the reaper, and the start-up load of a remote model
    supervisor.keep_alive("m", 0.0)
    async with supervisor.lease("m") as lease:
        await lease.ready()
    await eventually(lambda: harness.state("m") == "unloaded", timeout_s=5)


async def test_a_keep_alive_holds_until_the_model_is_unloaded_then_its_ttl_s_decides_again(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(["m"])
    supervisor = harness.supervisor
    await supervisor.load("m")
    supervisor.keep_alive("m", math.inf)
    await settle()
    assert supervisor.status("m").idle_ttl_s is None  # for ever
    supervisor.keep_alive("m", 30.0)
    await settle()
    assert supervisor.status("m").idle_ttl_s == 30.0
    await supervisor.unload("m")
    assert supervisor.status("m").idle_ttl_s is None  # the configured ttl_s: unset


async def test_no_keep_alive_gives_the_decision_back_to_ttl_s(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    supervisor = harness.supervisor
    await supervisor.load("m")
    supervisor.keep_alive("m", 5.0)
    supervisor.keep_alive("m", None)
    await settle()
    assert supervisor.status("m").idle_ttl_s is None


async def test_a_keep_alive_sent_while_the_model_unloads_is_for_its_next_use(make_harness: MakeHarness) -> None:
    harness = make_harness(["m"])
    supervisor = harness.supervisor
    await supervisor.load("m")
    async with supervisor.lease("m") as lease:
        await lease.ready()
        unloading = asyncio.create_task(supervisor.unload("m"))  # drains the request in flight first
        await eventually(lambda: harness.state("m") == "unloading")
        supervisor.keep_alive("m", 42.0)  # the next request's, arriving meanwhile
        await settle()
    await unloading
    await supervisor.load("m")
    assert supervisor.status("m").idle_ttl_s == 42.0
