"""Suite-wide policy: in CI (or under ``tests/stack.py``) no test may be skipped.

Every way a test can skip - a ``pytest.skip()`` call in a test or fixture, a ``skipif``
mark, a fixture that gives up for want of the service - ends up as a skipped report. This
hook turns each such report into a failure that quotes the skip reason, so a run that
quietly left a test out can never be green. ``xfail`` is left alone (it is not a skip).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.support.cpu_share import share_the_cpu
from tests.support.suite_policy import skips_are_failures

share_the_cpu()  # before any test starts a llama-server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and skips_are_failures():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (a skip here hides an untested behaviour): {reason}"
