"""When a crashed model is started again, and when it is given up: a pure function of its crashes.

As with an Erlang/OTP supervisor's restart intensity, the strategy is data
(:class:`RestartPolicy`) and the verdict a function of what happened (:func:`decide`).
Nothing here reads a clock, keeps state or touches a process, so each rule is checked by
a unit test of its own, and the actor that acts on the verdict holds no restart logic.

The rules:

- ``max_attempts = 0``: a crash is final, the model is ``failed``.
- A crash *streak* is the run of crashes, newest last, each within ``stable_uptime_s``
  of its instance becoming ready; a child that served longer before crashing was not
  crash-looping, so it starts a new streak.
- A streak longer than ``max_attempts`` is given up. Otherwise the model restarts, the
  first crash of a streak at once, later ones after an exponential backoff: each such
  restart succeeds, so without the pause a crash loop would spin at full speed.
- A restart tries to start the child up to ``max_attempts`` times, with the same backoff
  between failed starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RestartPolicy:
    """How hard to try: ``max_attempts`` is the config's ``restart_max_attempts``."""

    max_attempts: int
    backoff_base_s: float = 0.25
    backoff_max_s: float = 10.0
    #: A child that served this long before crashing starts a new streak.
    stable_uptime_s: float = 60.0

    def backoff_s(self, failures: int) -> float:
        """The pause after ``failures`` (1, 2, ...) in a row: base * 2**(failures - 1), capped."""
        return min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (failures - 1))


@dataclass(frozen=True)
class Crash:
    """One crash of a running child: when its instance became ready, and when it went down (monotonic)."""

    ready_at: float
    crashed_at: float


@dataclass(frozen=True)
class Restart:
    """Start the child again after ``after_s``, trying up to ``attempts`` times."""

    after_s: float
    attempts: int


@dataclass(frozen=True)
class GiveUp:
    """Do not restart; ``why`` completes the crash's own reason."""

    why: str


def streak(policy: RestartPolicy, history: Sequence[Crash]) -> int:
    """The length of the streak the newest crash of ``history`` ends.

    Counting back from the newest, each crash belongs to the streak, and a crash after a
    stable run (``stable_uptime_s`` or more) is its first: the ones before it do not count.
    """
    count = 0
    for crash in reversed(history):
        count += 1
        if crash.crashed_at - crash.ready_at >= policy.stable_uptime_s:
            break
    return count


def decide(policy: RestartPolicy, history: Sequence[Crash]) -> Restart | GiveUp:
    """The verdict on the newest crash of ``history`` (oldest first; each crash carries its own time)."""
    if policy.max_attempts == 0:
        return GiveUp("not restarted: restart_max_attempts = 0")
    crashes = streak(policy, history)
    if crashes > policy.max_attempts:
        return GiveUp(f"crashed {crashes} times in a row, each within {policy.stable_uptime_s:g}s of loading")
    return Restart(after_s=policy.backoff_s(crashes - 1) if crashes > 1 else 0.0, attempts=policy.max_attempts)


def keep(policy: RestartPolicy, history: Sequence[Crash]) -> tuple[Crash, ...]:
    """The part of ``history`` a later verdict can still depend on (the rest is forgotten)."""
    return tuple(history[-(policy.max_attempts + 1) :]) if policy.max_attempts else ()
