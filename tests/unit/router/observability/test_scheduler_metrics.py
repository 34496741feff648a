"""Loads and evictions reach /metrics from the supervisor's events."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from inference_service.router.observability.metrics import Metrics
from tests.support.configs import eventually
from tests.unit.router.conftest import MakeHarness

pytestmark = pytest.mark.timeout(30)


async def test_loads_load_time_and_evictions_with_their_reason_are_counted(harnesses: MakeHarness) -> None:
    harness = harnesses(["a", "b"], max_loaded_models=1)
    metrics = Metrics()
    harness.supervisor.events.listen(metrics.observe_event)

    await harness.supervisor.load("a")
    await harness.supervisor.load("b")  # evicts a, which is idle
    text = generate_latest(metrics.registry).decode()

    assert 'inference_model_loads_total{model="a"} 1.0' in text
    assert 'inference_model_loads_total{model="b"} 1.0' in text
    assert 'inference_model_load_duration_seconds_count{model="b"} 1.0' in text
    assert 'inference_model_evictions_total{model="a",reason="capacity"} 1.0' in text


async def test_a_crash_restart_is_counted_once(harnesses: MakeHarness) -> None:
    harness = harnesses(["m"])
    metrics = Metrics()
    harness.supervisor.events.listen(metrics.observe_event)
    await harness.supervisor.load("m")

    harness.runtimes["m"].crash()
    await eventually(lambda: harness.state("m") == "loaded" and harness.supervisor.status("m").restarts == 1)
    text = generate_latest(metrics.registry).decode()

    assert 'inference_model_restarts_total{model="m"} 1.0' in text
    assert 'inference_model_loads_total{model="m"} 2.0' in text
