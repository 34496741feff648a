"""Time bounds that stay honest on a shared, oversubscribed test machine.

The specification's bounds ("loaded in under 2 s", "back within 5 s") describe the
service on a machine with CPU to spare. When other work keeps the run queue longer than
the number of cores, every process - llama-server loading its weights included - runs
proportionally slower, so a fixed bound would fail for reasons that are not the
service's. The bound is stretched by the oversubscription, capped so a real regression
(a wrong poll interval, a missed exit) still fails.
"""

from __future__ import annotations

import os

MAX_STRETCH = 4.0


def budget_s(spec_s: float) -> float:
    """``spec_s`` on an idle machine; up to ``MAX_STRETCH`` times that while oversubscribed."""
    load_per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return spec_s * min(max(1.0, load_per_core), MAX_STRETCH)
