"""A llama-server child killed from outside is replaced without operator action."""

from __future__ import annotations

import itertools
import os
import re
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.supervisor.conftest import StartService
from tests.support.api import chat, model_card
from tests.support.configs import SMOLLM2_FILE, SMOLLM2_ID, smollm2, wait_until
from tests.support.llama import direct_start_s
from tests.support.service import ServiceProcess
from tests.support.timing import Budget, measured

pytestmark = pytest.mark.integration

#: A restart's router share: noticing the exit, the first backoff (0.25 s), spawning and polling.
RESTART_OVERHEAD_S = 2.0


def reloaded(service: ServiceProcess, old_pids: list[int]) -> dict[str, Any] | None:
    """The model's card once it is ``loaded`` in a child other than ``old_pids``."""
    card = model_card(service, SMOLLM2_ID)
    return card if card["status"] == "loaded" and card["pid"] not in (None, *old_pids) else None


def test_sigkilled_child_is_back_under_a_new_pid_within_a_start_plus_2s(
    start_service: StartService, tmp_path: Path
) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True)})
    old_pid = model_card(service, SMOLLM2_ID)["pid"]
    budget = measured(RESTART_OVERHEAD_S, direct_start_s(SMOLLM2_FILE, tmp_path, ctx_size=512, parallel=2))

    os.kill(old_pid, signal.SIGKILL)  # our own grandchild, by pid

    card = wait_until(lambda: reloaded(service, [old_pid]), timeout_s=budget.seconds)
    assert card["restarts"] == 1
    response = chat(service, SMOLLM2_ID)
    assert response.status_code == 200, response.text


def test_child_whose_restarts_keep_failing_ends_failed_with_the_reason(
    start_service: StartService, tmp_path: Path
) -> None:
    model_file = tmp_path / "smollm2.gguf"
    model_file.symlink_to(SMOLLM2_FILE)
    service = start_service({SMOLLM2_ID: smollm2(path=str(model_file), preload=True)}, restart_max_attempts=2)
    pid = model_card(service, SMOLLM2_ID)["pid"]

    model_file.unlink()  # every restart attempt will now fail before it can spawn
    os.kill(pid, signal.SIGKILL)

    # Two attempts with exponential backoff in between (0.25 s, then 0.5 s), well within 5 s;
    # no attempt gets as far as spawning, so nothing here is CPU-bound.
    card = wait_until(lambda: (c := model_card(service, SMOLLM2_ID))["status"] == "failed" and c, timeout_s=5.0)
    assert card["reason"].startswith("gave up after 2 restart attempts")
    assert "not found" in card["reason"]
    assert card["pid"] is None


def test_child_that_keeps_crashing_after_loading_ends_failed(start_service: StartService, tmp_path: Path) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True)}, restart_max_attempts=2)
    # Backoffs of up to 1 s between attempts, each attempt a full start.
    budget = measured(RESTART_OVERHEAD_S + 1.0, direct_start_s(SMOLLM2_FILE, tmp_path, ctx_size=512, parallel=2))
    pids: list[int] = []
    for _ in range(3):  # every restart succeeds, and every new child dies again at once
        card = wait_until(lambda: reloaded(service, pids), timeout_s=budget.seconds)
        pids.append(card["pid"])
        os.kill(card["pid"], signal.SIGKILL)

    card = wait_until(lambda: (c := model_card(service, SMOLLM2_ID))["status"] == "failed" and c, timeout_s=5.0)
    assert card["reason"].startswith("crashed 3 times in a row")
    assert card["restarts"] == 2  # the third crash was not restarted: it ended the model `failed`


#: The restart backoff: 0.25 s, doubling. The log's timestamps have millisecond resolution.
FIRST_BACKOFF_S, LOG_RESOLUTION_S = 0.25, 0.001
#: How late the router's event loop may wake from a backoff on an idle machine (stretched by load).
LATE_WAKE_S = 0.15


def test_restart_attempts_back_off_exponentially(start_service: StartService, tmp_path: Path) -> None:
    """The waits between failing restart attempts are 0.25, 0.5 and 1 s (the attempts themselves
    fail at once: the model file is gone). Read from the router's timestamped log."""
    model_file = tmp_path / "smollm2.gguf"
    model_file.symlink_to(SMOLLM2_FILE)
    service = start_service({SMOLLM2_ID: smollm2(path=str(model_file), preload=True)}, restart_max_attempts=4)
    pid = model_card(service, SMOLLM2_ID)["pid"]
    late = Budget(fixed_s=LOG_RESOLUTION_S, cpu_s=LATE_WAKE_S)  # a sleep never ends early, only late
    model_file.unlink()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: model_card(service, SMOLLM2_ID)["status"] == "failed", timeout_s=10.0)
    attempts = [
        datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
        for match in re.finditer(rf"^(\S+ \S+) .*restarting {SMOLLM2_ID} \(attempt \d/4\)", service.log(), re.MULTILINE)
    ]
    assert len(attempts) == 4, service.log()[-2000:]
    waits = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(attempts)]
    for number, wait in enumerate(waits):
        nominal = FIRST_BACKOFF_S * 2**number
        assert nominal - LOG_RESOLUTION_S <= wait <= nominal + late.seconds, (waits, str(late))
