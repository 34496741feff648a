"""A critic that dies mid-run degrades the critique to the generator's answer instead of failing it."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.orchestration.conftest import orchestrated
from tests.support.api import model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, wait_until
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def degraded(router: ServiceProcess, client: httpx.Client) -> dict[str, Any]:
    """Run a critique with long stages and SIGKILL gemma's llama-server once the critic stage
    holds it (the router reports it in flight); afterwards wait for the supervisor's restart."""
    critic_pid = model_card(router, GEMMA_ID)["pid"]
    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(orchestrated, client, "critique", max_tokens=64)
        wait_until(
            lambda: model_card(router, GEMMA_ID)["in_flight"] > 0 or running.done(), timeout_s=120, interval_s=0.01
        )
        assert not running.done(), f"the critique finished before its critic could be killed: {running.result().text}"
        os.kill(critic_pid, signal.SIGKILL)  # our own grandchild, by pid
        response = running.result(timeout=300)
    wait_until(
        lambda: (card := model_card(router, GEMMA_ID))["status"] == "loaded" and card["pid"] != critic_pid, timeout_s=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_killed_critic_gives_a_degraded_200(degraded: dict[str, Any]) -> None:
    assert degraded["orchestration"]["degraded"] is True
    assert GEMMA_ID in degraded["orchestration"]["degraded_reason"]


def test_degraded_critique_returns_the_generators_answer(degraded: dict[str, Any]) -> None:
    stages = degraded["orchestration"]["stages"]
    assert [(stage["role"], "error" in stage) for stage in stages] == [("generator", False), ("critic", True)]
    assert degraded["orchestration"]["models_used"] == [SMOLLM2_ID]
    assert degraded["choices"][0]["message"]["content"]
