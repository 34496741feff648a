"""The integration suite's own contract: with the service down it skips with the README's
message on a developer's machine, and fails in CI - a suite that skipped everything must
never look green."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.service import REPO_ROOT, free_port

E2E_TEST = "tests/integration/test_e2e.py::test_simple_completion"


def run_e2e_against_nothing(**extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run one integration test with INFERENCE_SERVICE_URL pointing at a port nobody listens on."""
    down_url = f"http://127.0.0.1:{free_port()}"
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "INTEGRATION_REQUIRED")}
    env |= {"INFERENCE_SERVICE_URL": down_url, **extra_env}
    return subprocess.run(
        [sys.executable, "-m", "pytest", E2E_TEST, "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_service_down_skips_with_the_readme_message_outside_ci() -> None:
    result = run_e2e_against_nothing()
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "Inference service not available at http://127.0.0.1:" in result.stdout


def test_service_down_fails_in_ci() -> None:
    result = run_e2e_against_nothing(CI="true")
    assert result.returncode != 0, result.stdout
    assert "Inference service not available at" in result.stdout
    assert "skipped" not in result.stdout


def test_service_down_fails_when_integration_is_required() -> None:
    result = run_e2e_against_nothing(INTEGRATION_REQUIRED="1")
    assert result.returncode != 0, result.stdout

