"""The suite's own contract: with the service down the integration tests skip with the README's
message on a developer's machine and fail in CI; in CI no skip of any kind passes, and a run
that collects nothing fails - a suite that skipped everything must never look green."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.stack import run_pytest
from tests.support.service import REPO_ROOT, free_port

E2E_TEST = "tests/integration/test_e2e.py::test_simple_completion"
DOWN_MESSAGE = "Inference service not available at http://127.0.0.1:"
SKIPPING_TESTS = """
import pytest

def test_skips_in_its_body():
    pytest.skip("no cached build")

@pytest.mark.skipif(True, reason="model file missing")
def test_skipped_by_a_mark():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""


def _env_without_policy(**extra_env: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "INTEGRATION_REQUIRED")}
    return env | extra_env


def _pytest(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args, "-q", "-rs", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_e2e_against_nothing(**extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run one integration test with INFERENCE_SERVICE_URL pointing at a port nobody listens on."""
    return _pytest(
        [E2E_TEST], _env_without_policy(INFERENCE_SERVICE_URL=f"http://127.0.0.1:{free_port()}", **extra_env)
    )


def run_skipping_tests(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """Run a file whose tests skip in the two usual ways (and one xfail), under the suite's conftest."""
    test_file = tmp_path / "test_skipping.py"
    test_file.write_text(SKIPPING_TESTS)
    return _pytest([str(test_file), "-p", "tests.conftest", f"--rootdir={tmp_path}"], _env_without_policy(**extra_env))


def test_service_down_skips_with_the_readme_message_outside_ci() -> None:
    result = run_e2e_against_nothing()
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert DOWN_MESSAGE in result.stdout


def test_service_down_fails_in_ci_naming_the_missing_service() -> None:
    result = run_e2e_against_nothing(CI="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert DOWN_MESSAGE in result.stdout


def test_service_down_fails_when_integration_is_required_naming_the_missing_service() -> None:
    result = run_e2e_against_nothing(INTEGRATION_REQUIRED="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert DOWN_MESSAGE in result.stdout


def test_skips_pass_outside_ci(tmp_path: Path) -> None:
    result = run_skipping_tests(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 skipped, 1 xfailed" in result.stdout


def test_every_skip_is_a_failure_in_ci_with_its_reason(tmp_path: Path) -> None:
    result = run_skipping_tests(tmp_path, CI="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 xfailed, 1 error" in result.stdout, result.stdout
    assert "no cached build" in result.stdout and "model file missing" in result.stdout


def test_stack_fails_a_run_that_collects_no_tests(tmp_path: Path) -> None:
    (tmp_path / "test_nothing.py").write_text("VALUE = 1\n")
    assert run_pytest("empty", [str(tmp_path)], os.environ, []) is False
