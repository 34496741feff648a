"""However the router ends, no llama-server outlives it."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import psutil
import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import gone, llama_servers
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def service_with_two_children(start_service: StartService) -> Iterator[tuple[ServiceProcess, list[int]]]:
    """A router with both models preloaded; any child still alive afterwards is killed by pid."""
    service = start_service({SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma(preload=True)})
    children = llama_servers(service)
    assert len(children) == 2
    yield service, [child.pid for child in children]
    for child in children:  # never leak a llama-server, whatever the assertion outcome
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def test_sigterm_to_router_stops_every_child_within_15s(
    service_with_two_children: tuple[ServiceProcess, list[int]],
) -> None:
    service, pids = service_with_two_children
    service.process.send_signal(signal.SIGTERM)
    wait_until(lambda: all(gone(pid) for pid in pids), timeout_s=15.0)
    service.process.wait(timeout=15)
    # The router stopped them itself (not the kernel's parent-death signal): it logged each stop.
    assert all(f"pid={pid} stopped" in service.log() for pid in pids)


def test_sigkill_to_router_kills_every_child_within_5s(
    service_with_two_children: tuple[ServiceProcess, list[int]],
) -> None:
    service, pids = service_with_two_children
    service.process.kill()
    service.process.wait(timeout=5)
    wait_until(lambda: all(gone(pid) for pid in pids), timeout_s=5.0)
