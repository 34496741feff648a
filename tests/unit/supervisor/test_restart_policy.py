"""The restart policy alone: a crash history in, restart-after or give-up out - no clock, no process."""

from __future__ import annotations

from inference_service.supervisor.restart_policy import Crash, GiveUp, Restart, RestartPolicy, decide, keep, streak

POLICY = RestartPolicy(max_attempts=3, backoff_base_s=0.25, backoff_max_s=10.0, stable_uptime_s=60.0)


def crash_loop(count: int, uptime_s: float = 1.0) -> list[Crash]:
    """``count`` crashes, each ``uptime_s`` after its instance became ready, a minute apart."""
    return [Crash(ready_at=minute * 60.0, crashed_at=minute * 60.0 + uptime_s) for minute in range(count)]


def test_the_first_crash_restarts_at_once_with_every_start_attempt() -> None:
    assert decide(POLICY, crash_loop(1)) == Restart(after_s=0.0, attempts=3)


def test_crashes_in_a_row_back_off_exponentially() -> None:
    assert [decide(POLICY, crash_loop(n)) for n in (2, 3)] == [
        Restart(after_s=0.25, attempts=3),
        Restart(after_s=0.5, attempts=3),
    ]


def test_a_streak_longer_than_max_attempts_is_given_up() -> None:
    verdict = decide(POLICY, crash_loop(4))
    assert verdict == GiveUp("crashed 4 times in a row, each within 60s of loading")


def test_a_crash_after_a_stable_run_starts_a_new_streak() -> None:
    history = [*crash_loop(3), Crash(ready_at=1000.0, crashed_at=1000.0 + 3600.0)]
    assert streak(POLICY, history) == 1
    assert decide(POLICY, history) == Restart(after_s=0.0, attempts=3)


def test_a_crash_after_a_stable_run_opens_the_streak_and_counts_in_it() -> None:
    # Served an hour, crashed, then crashed twice more soon after each restart: a streak of three.
    history = [Crash(ready_at=0.0, crashed_at=3600.0), *crash_loop(2)]
    assert streak(POLICY, history) == 3
    assert decide(POLICY, history) == Restart(after_s=0.5, attempts=3)


def test_restarts_disabled_give_up_at_the_first_crash() -> None:
    assert decide(RestartPolicy(max_attempts=0), crash_loop(1)) == GiveUp("not restarted: restart_max_attempts = 0")


def test_the_backoff_is_capped() -> None:
    assert [POLICY.backoff_s(n) for n in (1, 2, 3, 7, 8, 20)] == [0.25, 0.5, 1.0, 10.0, 10.0, 10.0]


def test_only_the_crashes_a_verdict_can_depend_on_are_kept() -> None:
    for count in range(1, 10):
        history = crash_loop(count)
        kept = keep(POLICY, history)
        assert len(kept) == min(count, POLICY.max_attempts + 1)
        assert type(decide(POLICY, kept)) is type(decide(POLICY, history))
    assert keep(RestartPolicy(max_attempts=0), crash_loop(3)) == ()
