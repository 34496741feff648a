"""The model state machine: which transitions exist, in one table, and the compare-and-swap that makes them."""

from __future__ import annotations

from enum import StrEnum


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"
    FAILED = "failed"
    #: Final: the supervisor closed. Nothing leaves it, so no late task can revive a model.
    SHUTDOWN = "shutdown"


_ANY_LIVE = frozenset(ModelState) - {ModelState.SHUTDOWN}

ALLOWED_TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    ModelState.UNLOADED: frozenset({ModelState.LOADING, ModelState.SHUTDOWN}),
    # LOADING -> LOADING: a restart attempt after a crash follows a failed attempt.
    ModelState.LOADING: frozenset(
        {ModelState.LOADED, ModelState.FAILED, ModelState.UNLOADING, ModelState.LOADING, ModelState.SHUTDOWN}
    ),
    # LOADED -> LOADING: the child crashed and is being restarted; -> FAILED: an external backend went away.
    ModelState.LOADED: frozenset({ModelState.UNLOADING, ModelState.LOADING, ModelState.FAILED, ModelState.SHUTDOWN}),
    ModelState.UNLOADING: frozenset({ModelState.UNLOADED, ModelState.SHUTDOWN}),
    ModelState.FAILED: frozenset({ModelState.LOADING, ModelState.LOADED, ModelState.UNLOADING, ModelState.SHUTDOWN}),
    ModelState.SHUTDOWN: frozenset(),
}
assert set(ALLOWED_TRANSITIONS) == _ANY_LIVE | {ModelState.SHUTDOWN}


class InvalidTransition(RuntimeError):
    pass


class StaleTransition(RuntimeError):
    """A writer's view of the state is out of date: the model is no longer where it expected."""


def check_transition(current: ModelState, target: ModelState) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"{current} -> {target} is not a valid model state transition")


def compare_and_swap(current: ModelState, expected: ModelState | frozenset[ModelState], target: ModelState) -> None:
    """Check that a transition from ``expected`` to ``target`` may be made while the state is ``current``.

    Raises :class:`StaleTransition` when the state moved on since the writer looked (its
    decision no longer applies), :class:`InvalidTransition` when the table forbids the move.
    """
    allowed = expected if isinstance(expected, frozenset) else frozenset({expected})
    if current not in allowed:
        raise StaleTransition(f"expected {'/'.join(sorted(allowed))} -> {target}, but the model is {current}")
    check_transition(current, target)
