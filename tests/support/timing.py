"""Time bounds that stay honest on a shared, oversubscribed test machine.

A bound has two parts. The **fixed** part - a poll interval, a backoff, a reaper period -
is the specification's number and is never stretched: a wrong interval must fail however
busy the machine is. The **CPU-bound** part - llama-server loading its weights, the router's
own Python work - runs proportionally slower when other work keeps the run queue longer
than the number of cores. Where a test can, it measures that part itself, in the same test
and under the same load (a direct llama-server start or exit), and adds the measurement as
it is (a fixed part: it already carries the load). What it cannot measure (the router's
share) is a nominal idle-machine figure, stretched by the load average read *before* the
timed work (capped, so a real regression still fails).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MAX_STRETCH = 4.0


def load_stretch() -> float:
    """How oversubscribed the machine is right now: 1.0 idle, up to ``MAX_STRETCH``."""
    load_per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return min(max(1.0, load_per_core), MAX_STRETCH)


@dataclass(frozen=True)
class Budget:
    """``fixed_s`` (never stretched) + ``cpu_s`` (stretched by the load when the Budget is made).

    Make it *before* the timed work: the load average the work itself causes must not
    loosen its own bound. Pass a ``cpu_s`` measured in the same test with ``stretch=1``.
    """

    fixed_s: float
    cpu_s: float = 0.0
    stretch: float = field(default_factory=load_stretch)

    @property
    def seconds(self) -> float:
        return self.fixed_s + self.cpu_s * self.stretch

    def __str__(self) -> str:
        return f"{self.seconds:.2f}s = {self.fixed_s:g}s fixed + {self.cpu_s:.2f}s CPU-bound x{self.stretch:.1f}"


def measured(router_share_s: float, measured_s: float) -> Budget:
    """A bound for work whose runtime part was timed in the same test (``measured_s``, already
    under the current load: not stretched again) plus the router's own share (``router_share_s``,
    CPU work in the router process: stretched by the load read now, before the timed work)."""
    return Budget(fixed_s=measured_s, cpu_s=router_share_s)
