"""tests/support/timing.py's interleaved comparison: the order of its runs and its medians."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.timing import interleaved


def test_baseline_and_tested_runs_alternate_a_b_b_a() -> None:
    order: list[str] = []

    def run(name: str) -> Callable[[], float]:
        def measure() -> float:
            order.append(name)
            return 0.0

        return measure

    interleaved(run("baseline"), run("tested"), rounds=3)
    assert order == ["baseline", "tested", "tested", "baseline", "baseline", "tested"]


def test_medians_are_compared_so_one_slow_sample_does_not_count() -> None:
    direct = iter([1.0, 1.2, 5.0])  # one start that the busy machine held up
    routed = iter([1.5, 1.4, 2.4])
    comparison = interleaved(lambda: next(direct), lambda: next(routed), rounds=3)
    assert comparison.baseline_s == (1.0, 1.2, 5.0)
    assert comparison.added_s == 1.5 - 1.2
