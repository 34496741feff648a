"""The router's own recent log lines, kept in memory for ``GET /v1/logs`` and the dashboard.

A logging handler on the root logger: every record the router logs (access lines
included) is formatted once and kept in a bounded ring, numbered, so a follower asks
for "everything after line N" and never sees a line twice or misses one still buffered.
"""

from __future__ import annotations

import collections
import itertools
import logging


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._lines: collections.deque[tuple[int, str]] = collections.deque(maxlen=capacity)
        self._numbers = itertools.count(1)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a bad format argument must not break the code that logged it
            self.handleError(record)
            return
        self._lines.append((next(self._numbers), line))  # handle() holds self.lock around emit()

    def since(self, after: int) -> tuple[list[str], int]:
        """Lines numbered above ``after`` still in the buffer, and the number of the last one."""
        with self.lock:  # type: ignore[union-attr]
            lines = [(number, line) for number, line in self._lines if number > after]
        last = lines[-1][0] if lines else after
        return [line for _, line in lines], last

    def tail(self, count: int | None) -> tuple[list[str], int]:
        """The last ``count`` lines (all buffered when None) and the number of the last one."""
        lines, last = self.since(0)
        return (lines if count is None else lines[max(0, len(lines) - count):]), last
