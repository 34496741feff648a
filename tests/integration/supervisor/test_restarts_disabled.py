"""``restart_max_attempts = 0`` means what the README says: a crashed child is not restarted.

The model goes straight to ``failed`` with the crash in its reason, and no new child appears.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import llama_servers, model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until

pytestmark = pytest.mark.integration


def test_crashed_child_is_not_restarted_when_restarts_are_disabled(start_service: StartService) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True)}, restart_max_attempts=0)
    pid = model_card(service, SMOLLM2_ID)["pid"]

    os.kill(pid, signal.SIGKILL)  # our own grandchild, by pid

    card = wait_until(lambda: (c := model_card(service, SMOLLM2_ID))["status"] == "failed" and c, timeout_s=5.0)
    assert f"pid {pid} exited with code -9" in card["reason"]
    assert "restart_max_attempts = 0" in card["reason"]
    assert (card["restarts"], card["pid"]) == (0, None)
    assert llama_servers(service) == []
