"""Finding the new lines of a runtime's ring-buffered log between two snapshots."""

from __future__ import annotations

from inference_service.router.api.logs import appended


def test_lines_appended_to_a_buffer_not_yet_full_are_new() -> None:
    assert appended(["a", "b"], ["a", "b", "c", "d"]) == ["c", "d"]


def test_lines_appended_to_a_full_buffer_that_dropped_its_oldest_are_new() -> None:
    assert appended(["a", "b", "c"], ["c", "d", "e"]) == ["d", "e"]


def test_an_unchanged_buffer_has_nothing_new() -> None:
    assert appended(["a", "b", "c"], ["a", "b", "c"]) == []


def test_a_log_with_no_overlap_is_all_new() -> None:
    """A restarted process starts a fresh log."""
    assert appended(["a", "b"], ["x", "y"]) == ["x", "y"]


def test_repeated_lines_are_aligned_on_the_longest_overlap() -> None:
    assert appended(["x", "a", "a"], ["a", "a", "a"]) == ["a"]
