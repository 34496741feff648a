"""The start of a resumed answer against the text the client has: a continuation's repeat cut off, a replay checked."""

from __future__ import annotations

import pytest

from inference_service.router.proxy.resume.echo import Diverged, Echo, Replay


def test_a_repeat_split_over_several_deltas_is_cut_off_whole() -> None:
    echo = Echo("The cat was")
    assert [echo.strip(piece) for piece in ("The", " cat", " was a", " dog")] == ["", "", " a", " dog"]


def test_a_runtime_that_does_not_repeat_the_prefix_is_relayed_as_it_is() -> None:
    echo = Echo("The cat")
    assert [echo.strip(piece) for piece in (" was", " a")] == [" was", " a"]


def test_a_replay_giving_the_text_again_is_relayed_from_the_cut_even_in_other_pieces() -> None:
    replay = Replay("The cat was")
    assert [replay.strip(piece) for piece in ("The c", "at", " was a", " dog")] == ["", "", " a", " dog"]
    replay.ending()  # past the cut: an ending is the answer's own


@pytest.mark.parametrize("pieces", [["The", " dog"], ["The cat is"]], ids=["a piece apart", "across the cut"])
def test_a_replay_that_parts_from_the_text_sent_diverges(pieces: list[str]) -> None:
    replay = Replay("The cat was")
    with pytest.raises(Diverged, match="parted"):
        for piece in pieces:
            replay.strip(piece)


def test_a_replay_that_ends_before_the_cut_diverges() -> None:
    replay = Replay("The cat was")
    replay.strip("The cat")
    with pytest.raises(Diverged, match="4 characters before the cut"):
        replay.ending()


def test_a_continuation_may_end_before_it_repeated_anything() -> None:
    Echo("The cat").ending()
