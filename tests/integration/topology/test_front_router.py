"""The front router (deploy/topology/front.toml): a local model plus back router A's as ``remote``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.support.configs import wait_until
from tests.support.timing import Budget
from tests.support.topology import FRONT_LOCAL_MODEL, MODEL_ID, Topology

pytestmark = pytest.mark.integration

#: What one health probe may add to the interval on an idle machine: a refused connection or a
#: 200 from a router on the same machine, plus the event loop's scheduling (stretched by load).
#: The interval itself is the contract: never stretched.
PROBE_SLACK_S = 0.5


def front_card(topology: Topology, model_id: str = MODEL_ID) -> dict[str, Any]:
    response = httpx.get(f"{topology.front.url}/v1/models/{model_id}", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_status(topology: Topology, status: str, timeout_s: float) -> dict[str, Any]:
    return wait_until(lambda: (card := front_card(topology))["status"] == status and card, timeout_s, interval_s=0.02)


def test_remote_model_turns_failed_within_its_health_interval_and_loaded_when_back(topology: Topology) -> None:
    """Measured from the front router's own ``state_since``, not from our polling: at most one probe
    interval (plus one probe) between the host dying and ``failed``; two between it serving again and
    ``loaded`` (the last failed probe's result is reused for up to one interval)."""
    interval = topology.remote_health_interval_s
    bound = Budget(fixed_s=interval, cpu_s=PROBE_SLACK_S).seconds
    assert front_card(topology)["status"] == "loaded"

    killed_at = time.time()
    topology.back_a.kill()
    failed = wait_status(topology, "failed", timeout_s=bound + 5)
    took = failed["state_since"] - killed_at
    assert 0 <= took <= bound, f"failed {took:.2f}s after the kill; health interval {interval:g}s"
    refused = httpx.post(
        f"{topology.front.url}/v1/chat/completions",
        timeout=10,
        json={"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
    )
    assert refused.status_code == 503, refused.text

    restarting_at = time.time()
    topology.back_a.start()  # returns once /health/ready answers 200, polled every 0.1 s
    ready_at = time.time()
    # Recovery probes every interval, and a probe result is reused for up to one interval
    # (README: models on one host share its health), so "loaded" may take two intervals.
    recovery_bound = Budget(fixed_s=2 * interval, cpu_s=PROBE_SLACK_S).seconds
    loaded = wait_status(topology, "loaded", timeout_s=recovery_bound + 5)
    assert loaded["state_since"] >= restarting_at
    took = loaded["state_since"] - ready_at
    assert took <= recovery_bound, f"loaded {took:.2f}s after router A was ready; health interval {interval:g}s"
    print(
        f"health interval {interval:g}s: failed {failed['state_since'] - killed_at:.2f}s after the kill, "
        f"loaded {took:.2f}s after router A was ready (bound {bound:.2f}s)"
    )


def test_orchestration_across_front_local_and_remote_completes(topology: Topology) -> None:
    """The preset's generator runs on back router A (remote), its critic on the front's own llama-server."""
    served_before = topology.back_a.requests_served()
    body = {
        "preset": "cross-host-critique",
        "messages": [{"role": "user", "content": "Name one primary colour."}],
        "max_tokens": 8,
    }
    response = httpx.post(f"{topology.front.url}/v1/chat/completions", json=body, timeout=180)
    assert response.status_code == 200, response.text
    orchestration = response.json()["orchestration"]
    assert orchestration["mode"] == "critique" and not orchestration["degraded"], orchestration
    stage_models = {stage["role"]: stage["model"] for stage in orchestration["stages"]}
    assert stage_models.get("generator") == MODEL_ID and stage_models.get("critic") == FRONT_LOCAL_MODEL, stage_models
    remote_stages = sum(stage["model"] == MODEL_ID for stage in orchestration["stages"])
    assert topology.back_a.requests_served() - served_before == remote_stages, (
        "the remote stages did not reach router A"
    )
    assert front_card(topology, FRONT_LOCAL_MODEL)["runtime"] == "llamacpp"
