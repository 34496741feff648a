"""Reading one sample out of a Prometheus text exposition (the router's or llama-server's /metrics)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the first ``name`` sample whose labels include ``labels``; None if there is none."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            return float(match.group(2))
    return None


def metrics_once(fetch: Callable[[], str], name: str, at_least: float, timeout_s: float = 5.0, **labels: str) -> str:
    """The exposition ``fetch()`` returns once sample ``name`` reaches ``at_least`` (the last one after ``timeout_s``).

    A streamed response is counted when the server's response generator ends, a moment
    after the client has read the last byte; polling avoids that race without hiding a
    missing count - the caller still asserts the exact value.
    """
    deadline = time.monotonic() + timeout_s
    while (sample(text := fetch(), name, **labels) or 0.0) < at_least and time.monotonic() < deadline:
        time.sleep(0.02)
    return text
