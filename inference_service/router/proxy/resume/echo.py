"""Where a resumed answer meets the cut: the text the client has, cut off or checked.

A continuation (the text so far as a final assistant message) repeats that text first on
llama-server: :class:`Echo` cuts the repeat off. A replay (the request sent again as it was,
for an answer that comes out the same every time) must give that text again to the character
before anything new is relayed: :class:`Replay` checks it, and raises :class:`Diverged` at the
first piece that parts from it.
"""

from __future__ import annotations


class Diverged(Exception):
    """A replay's answer parted from the text the client has: it is continued from that text instead."""


class Echo:
    """Cuts the continuation's repeat of the text the client has off the start of its deltas.

    A runtime that does not repeat it (its first delta does not start like the prefix) is
    relayed as it is: its text is the continuation itself.
    """

    def __init__(self, prefix: str) -> None:
        self._pending = prefix

    def strip(self, piece: str) -> str:
        if not self._pending:
            return piece
        overlap = min(len(piece), len(self._pending))
        if piece[:overlap] != self._pending[:overlap]:
            return self._parted(piece)
        self._pending = self._pending[overlap:]
        return piece[overlap:]

    def ending(self) -> None:
        """The answer ends here (a continuation may end before it repeated anything)."""

    def _parted(self, piece: str) -> str:
        self._pending = ""
        return piece


class Replay(Echo):
    """A replay's answer up to the cut: the text the client has, to the character, or :class:`Diverged`."""

    def ending(self) -> None:
        if self._pending:
            raise Diverged(f"the replay ended {len(self._pending)} characters before the cut")

    def _parted(self, piece: str) -> str:
        raise Diverged(f"the replay parted from the text sent, {len(self._pending)} characters before the cut")
