"""The ``inference-service`` command run as a user runs it: a subprocess of this checkout."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.service import REPO_ROOT

#: The command line that runs this checkout's CLI (``inference-service``, without an install).
CLI = [sys.executable, "-m", "inference_service"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """``inference-service ARGS`` with the caller's environment plus ``env``, and its output as text.

    ``INFERENCE_API_KEY`` is left out of the inherited environment: a test sets the key it means.
    """
    inherited = {key: value for key, value in os.environ.items() if key != "INFERENCE_API_KEY"}
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=REPO_ROOT,
        env={**inherited, **(env or {})},
    )
