"""The agreement measure behind debate/ensemble confidence: mean pairwise Jaccard of word sets."""

from __future__ import annotations

import pytest

from inference_service.router.orchestration.agreement import agreement, token_set


def test_identical_answers_agree_fully() -> None:
    assert agreement(["Paris is the capital.", "Paris is the capital."]) == 1.0


def test_answers_sharing_no_word_agree_not_at_all() -> None:
    assert agreement(["Paris", "Berlin"]) == 0.0


def test_case_and_punctuation_do_not_count_as_disagreement() -> None:
    assert agreement(["PARIS, France!", "paris france"]) == 1.0


def test_partial_overlap_is_intersection_over_union() -> None:
    assert agreement(["a b c", "b c d"]) == 0.5  # {b, c} / {a, b, c, d}


def test_several_answers_average_every_pair() -> None:
    # pairs: (a b, a b) = 1, (a b, c d) = 0, (a b, c d) = 0
    assert agreement(["a b", "a b", "c d"]) == pytest.approx(1 / 3, abs=1e-4)


@pytest.mark.parametrize("texts", [[], ["only one answer"], ["", ""]])
def test_nothing_to_disagree_about_is_full_agreement(texts: list[str]) -> None:
    assert agreement(texts) == 1.0


def test_token_set_is_lowercased_words() -> None:
    assert token_set("It's 2 o'clock, Paris.") == {"it", "s", "2", "o", "clock", "paris"}
