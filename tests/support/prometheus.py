"""Reading one sample out of a Prometheus text exposition (the router's or llama-server's /metrics)."""

from __future__ import annotations

import re


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the first ``name`` sample whose labels include ``labels``; None if there is none."""
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            return float(match.group(2))
    return None
