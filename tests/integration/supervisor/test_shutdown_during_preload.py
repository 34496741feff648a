"""SIGTERM while a preload is still under way: the router stops at once and takes its child along.

The server only acts on a stop signal after start-up, and start-up waits for preloads,
which may take up to ``health_timeout_s``. A model that never becomes healthy makes that
window as long as we like: ``extra_args`` moves llama-server to a decoy port (the last
``--port`` wins), so the child runs and loads but our health probes never reach it.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.support.api import gone, llama_servers
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.service import free_port, running_service

pytestmark = pytest.mark.integration


def test_sigterm_during_a_preload_that_never_finishes_stops_router_and_child_within_15s(tmp_path: Path) -> None:
    never_healthy = smollm2(preload=True, extra_args=["--port", str(free_port())])
    config = write_config(tmp_path / "config.toml", {SMOLLM2_ID: never_healthy}, health_timeout_s=120)
    with running_service(config, tmp_path / "logs", wait_healthy=False) as service:
        child = wait_until(lambda: llama_servers(service), timeout_s=30.0)[0]

        service.process.send_signal(signal.SIGTERM)

        service.process.wait(timeout=15)  # the router reaps its child before it exits
        assert gone(child.pid)
        # The router stopped it itself, not the kernel's parent-death signal.
        assert f"pid={child.pid} stopped" in service.log()
