"""When a skipped test counts as a failure: in CI, and whenever the whole stack is required.

A green run must mean every test ran. On a developer's machine a test may skip for want of
the service or a cached build (with a message saying what to run); in CI (``CI=true``) or
under ``tests/stack.py`` (``INTEGRATION_REQUIRED=1``) the same skip hides a gap, so
``tests/conftest.py`` reports it as a failure.
"""

from __future__ import annotations

import os


def skips_are_failures() -> bool:
    """True in CI or when ``INTEGRATION_REQUIRED=1``: a green run must have run everything."""
    return os.environ.get("CI", "").lower() in ("true", "1") or os.environ.get("INTEGRATION_REQUIRED", "") == "1"
