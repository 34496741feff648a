"""``inference-service models list|load|unload --url`` against a live router."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import REPO_ROOT, ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    return start_router({SMOLLM2_ID: smollm2(aliases=["smol"])})


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference_service", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_models_list_prints_each_model_with_its_state(router: ServiceProcess) -> None:
    result = cli("models", "list", "--url", router.url)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.split()[:3] == [SMOLLM2_ID, "unloaded", "llamacpp"]
    assert line.endswith("aliases=smol")


def test_models_load_then_unload_drive_the_service(router: ServiceProcess) -> None:
    loaded = cli("models", "load", SMOLLM2_ID, "--url", router.url)
    assert loaded.returncode == 0, loaded.stderr
    pid = model_card(router, SMOLLM2_ID)["pid"]
    assert loaded.stdout.split()[:4] == [SMOLLM2_ID, "loaded", "llamacpp", f"pid={pid}"]
    unloaded = cli("models", "unload", SMOLLM2_ID, "--url", router.url)
    assert unloaded.returncode == 0, unloaded.stderr
    assert unloaded.stdout.split()[:2] == [SMOLLM2_ID, "unloaded"]
    assert model_card(router, SMOLLM2_ID)["status"] == "unloaded"


def test_models_load_of_an_unknown_id_prints_one_error_line_and_exits_2(router: ServiceProcess) -> None:
    result = cli("models", "load", "no-such-model", "--url", router.url)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert (
        line.startswith("inference-service: error: ") and "/v1/models/no-such-model" in line and "HTTP 404" in line
    ), line
