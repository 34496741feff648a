"""The model state machine: which transitions exist, in one table."""

from __future__ import annotations

from enum import StrEnum


class ModelState(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    UNLOADING = "unloading"
    FAILED = "failed"


ALLOWED_TRANSITIONS: dict[ModelState, frozenset[ModelState]] = {
    ModelState.UNLOADED: frozenset({ModelState.LOADING}),
    # LOADING -> LOADING: a restart attempt after a crash follows a failed attempt.
    ModelState.LOADING: frozenset({ModelState.LOADED, ModelState.FAILED, ModelState.UNLOADING, ModelState.LOADING}),
    # LOADED -> LOADING: the child crashed and is being restarted; -> FAILED: an external backend went away.
    ModelState.LOADED: frozenset({ModelState.UNLOADING, ModelState.LOADING, ModelState.FAILED}),
    ModelState.UNLOADING: frozenset({ModelState.UNLOADED}),
    ModelState.FAILED: frozenset({ModelState.LOADING, ModelState.LOADED, ModelState.UNLOADING}),
}


class InvalidTransition(RuntimeError):
    pass


def check_transition(current: ModelState, target: ModelState) -> None:
    if target not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"{current} -> {target} is not a valid model state transition")
