"""The model state machine: the transitions the supervisor relies on, and the ones it must never make."""

from __future__ import annotations

import pytest

from inference_service.supervisor.state import (
    ALLOWED_TRANSITIONS,
    InvalidTransition,
    ModelState,
    StaleTransition,
    check_transition,
    compare_and_swap,
)

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
    (ModelState.SHUTDOWN, ModelState.LOADING),  # shutdown is final
    (ModelState.SHUTDOWN, ModelState.LOADED),
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
    assert [str(state) for state in ModelState] == ["unloaded", "loading", "loaded", "unloading", "failed", "shutdown"]


@pytest.mark.parametrize("state", [s for s in ModelState if s != ModelState.SHUTDOWN])
def test_every_live_state_can_shut_down(state: ModelState) -> None:
    check_transition(state, ModelState.SHUTDOWN)


def test_a_writer_whose_expected_state_is_stale_fails_cleanly() -> None:
    # A start that finished after an unload began: it expected LOADING, the model is UNLOADING.
    with pytest.raises(StaleTransition, match="expected loading -> loaded, but the model is unloading"):
        compare_and_swap(ModelState.UNLOADING, ModelState.LOADING, ModelState.LOADED)


def test_compare_and_swap_accepts_any_of_several_expected_states() -> None:
    compare_and_swap(ModelState.FAILED, frozenset({ModelState.UNLOADED, ModelState.FAILED}), ModelState.LOADING)
