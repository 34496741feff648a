"""``inference-service models list|load|unload --url`` against a live router."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess

import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.api import model_card
from tests.support.cli import CLI, run_cli
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import REPO_ROOT, ServiceProcess

pytestmark = pytest.mark.integration

#: A pipe shrunk to one page: far less than ``models list`` prints for ``CROWD`` models
#: (about 85 bytes a line), so the listing cannot all fit in before its reader leaves.
PIPE_BYTES = 4096
CROWD = 200


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    return start_router({SMOLLM2_ID: smollm2(aliases=["smol"])})


@pytest.fixture(scope="module")
def crowded_router(start_router: StartRouter) -> ServiceProcess:
    """Many unloaded models: a long ``models list``, and no llama-server started for it."""
    return start_router({f"smollm2-copy-{number:03d}": smollm2() for number in range(CROWD)})


def test_models_list_prints_each_model_with_its_state(router: ServiceProcess) -> None:
    result = run_cli("models", "list", "--url", router.url)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.split()[:3] == [SMOLLM2_ID, "unloaded", "llamacpp"]
    assert line.endswith("aliases=smol")


def test_models_load_then_unload_drive_the_service(router: ServiceProcess) -> None:
    loaded = run_cli("models", "load", SMOLLM2_ID, "--url", router.url)
    assert loaded.returncode == 0, loaded.stderr
    pid = model_card(router, SMOLLM2_ID)["pid"]
    assert loaded.stdout.split()[:4] == [SMOLLM2_ID, "loaded", "llamacpp", f"pid={pid}"]
    unloaded = run_cli("models", "unload", SMOLLM2_ID, "--url", router.url)
    assert unloaded.returncode == 0, unloaded.stderr
    assert unloaded.stdout.split()[:2] == [SMOLLM2_ID, "unloaded"]
    assert model_card(router, SMOLLM2_ID)["status"] == "unloaded"


def test_models_load_of_an_unknown_id_prints_one_error_line_and_exits_2(router: ServiceProcess) -> None:
    result = run_cli("models", "load", "no-such-model", "--url", router.url)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert (
        line.startswith("inference-service: error: ") and "/v1/models/no-such-model" in line and "HTTP 404" in line
    ), line


def test_models_list_piped_into_head_stops_quietly_when_head_leaves(crowded_router: ServiceProcess) -> None:
    """``models list | head -c1``: head takes one byte and exits, the CLI's next write finds no
    reader. It stops without a traceback and exits as a shell's own tools do (128 + SIGPIPE)."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    listing = [*CLI, "models", "list", "--url", crowded_router.url]
    with (
        subprocess.Popen(["head", "-c1"], stdin=read_end, stdout=subprocess.PIPE) as head,
        subprocess.Popen(listing, cwd=REPO_ROOT, stdout=write_end, stderr=subprocess.PIPE) as listing_cli,
    ):
        os.close(read_end)
        os.close(write_end)
        first_byte, _ = head.communicate(timeout=120)
        _, errors = listing_cli.communicate(timeout=120)
    assert first_byte == b"s"
    assert errors.decode() == ""
    assert listing_cli.returncode == 128 + signal.SIGPIPE
