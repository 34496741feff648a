"""The model state machine: the transitions the supervisor relies on, and the ones it must never make."""

from __future__ import annotations

import pytest

from inference_service.supervisor.state import ALLOWED_TRANSITIONS, InvalidTransition, ModelState, check_transition

VALID = [
    (ModelState.UNLOADED, ModelState.LOADING),  # first load
    (ModelState.LOADING, ModelState.LOADED),  # healthy
    (ModelState.LOADING, ModelState.FAILED),  # child exited at start
    (ModelState.LOADING, ModelState.LOADING),  # next restart attempt
    (ModelState.LOADING, ModelState.UNLOADING),  # unload during a load
    (ModelState.LOADED, ModelState.LOADING),  # crashed, restarting
    (ModelState.LOADED, ModelState.UNLOADING),  # unload / eviction / ttl
    (ModelState.LOADED, ModelState.FAILED),  # external backend went away
    (ModelState.UNLOADING, ModelState.UNLOADED),
    (ModelState.FAILED, ModelState.LOADING),  # load retried
    (ModelState.FAILED, ModelState.LOADED),  # external backend recovered
    (ModelState.FAILED, ModelState.UNLOADING),
]
INVALID = [
    (ModelState.UNLOADED, ModelState.LOADED),  # nothing becomes ready without loading
    (ModelState.UNLOADED, ModelState.UNLOADING),
    (ModelState.LOADED, ModelState.UNLOADED),  # an unload always drains through UNLOADING
    (ModelState.UNLOADING, ModelState.LOADED),  # an unload cannot be undone halfway
    (ModelState.UNLOADING, ModelState.LOADING),
    (ModelState.FAILED, ModelState.UNLOADED),
]


@pytest.mark.parametrize(("current", "target"), VALID)
def test_supervisor_transitions_are_allowed(current: ModelState, target: ModelState) -> None:
    check_transition(current, target)
    assert target in ALLOWED_TRANSITIONS[current]


@pytest.mark.parametrize(("current", "target"), INVALID)
def test_impossible_transitions_raise(current: ModelState, target: ModelState) -> None:
    with pytest.raises(InvalidTransition, match=f"{current} -> {target}"):
        check_transition(current, target)


def test_every_state_has_a_transition_row() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(ModelState)


def test_states_serialize_as_their_api_names() -> None:
    assert [str(state) for state in ModelState] == ["unloaded", "loading", "loaded", "unloading", "failed"]
