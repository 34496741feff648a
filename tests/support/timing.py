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

What the router adds to work an upstream does anyway (a load, a release) is no single
sample against a single sample: one llama-server start can take twice as long as the next
on a busy machine. :func:`interleaved` times the direct and the routed way alternately in
the same run and compares their medians; so does any "X does not slow Y down" check, with
the unobstructed Y as its baseline.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
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


@dataclass(frozen=True)
class Interleaved:
    """Durations of the same work done two ways - a baseline (the upstream directly, or the
    same requests without the obstacle under test) and the way under test - measured alternately."""

    baseline_s: tuple[float, ...]
    tested_s: tuple[float, ...]

    @property
    def added_s(self) -> float:
        """What the tested way adds: the difference of the medians (robust to one slow sample)."""
        return statistics.median(self.tested_s) - statistics.median(self.baseline_s)

    def __str__(self) -> str:
        def listed(samples: tuple[float, ...]) -> str:
            return ", ".join(f"{sample:.2f}" for sample in samples)

        return f"adds {self.added_s:.2f}s: baseline [{listed(self.baseline_s)}]s, tested [{listed(self.tested_s)}]s"


def interleaved(baseline: Callable[[], float], tested: Callable[[], float], rounds: int = 3) -> Interleaved:
    """Run ``baseline`` and ``tested`` ``rounds`` times each, in the order A B B A A B ..., so a
    machine that gets busier or quieter during the run weighs on both sides alike.

    Each callable does the work once and returns the seconds it measured: it times only the
    part being compared, not its own setup.
    """
    baselines: list[float] = []
    tested_runs: list[float] = []
    for round_number in range(rounds):
        pair = [(baseline, baselines), (tested, tested_runs)]
        for measure, samples in pair if round_number % 2 == 0 else reversed(pair):
            samples.append(measure())
    return Interleaved(tuple(baselines), tuple(tested_runs))
