"""The router's own recent log lines, kept in memory for ``GET /v1/logs`` and the dashboard.

A logging handler on the root logger: every record the router logs (access lines
included) is kept in a bounded ring, numbered, so a follower asks for "everything after
line N" and never sees a line twice or misses one still buffered. Records are formatted
when read, not when logged: most are never read, and the request path pays only an append.

A record is kept only as data, never with live objects: one that carries an exception
(its traceback holds every frame's locals - a partly read request body, say) or format
arguments is kept as a copy with its message and traceback already rendered to text, so
a ring of ``log_buffer_lines`` records holds nothing but those lines.
"""

from __future__ import annotations

import collections
import itertools
import logging


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int) -> None:
        super().__init__()
        self._records: collections.deque[tuple[int, logging.LogRecord]] = collections.deque(maxlen=capacity)
        self._numbers = itertools.count(1)

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.args:
            record = self._detached(record)
        self._records.append((next(self._numbers), record))  # handle() holds self.lock around emit()

    def _detached(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy of ``record`` with its message and exception as text: no arguments, no traceback.

        A copy, because the other handlers of the root logger still format the original.
        """
        kept = logging.makeLogRecord(record.__dict__)
        try:
            kept.msg = record.getMessage()
        except Exception:  # a bad format argument: keep what there is rather than fail the logger
            kept.msg = f"{record.msg!r} (unformattable arguments)"
        kept.args = None
        if record.exc_info:
            kept.exc_text = record.exc_text or (self.formatter or logging.Formatter()).formatException(record.exc_info)
        kept.exc_info = None
        return kept

    def _line(self, record: logging.LogRecord) -> str:
        try:
            return self.format(record)
        except Exception:  # a bad format argument: show what there is rather than fail the reader
            return f"{record.levelname} {record.name} {record.msg!r} (unformattable arguments)"

    def since(self, after: int) -> tuple[list[str], int]:
        """Lines numbered above ``after`` still in the buffer, and the number of the last one."""
        self.acquire()  # the handler's own lock, which emit() holds while it appends
        try:
            records = [(number, record) for number, record in self._records if number > after]
        finally:
            self.release()
        last = records[-1][0] if records else after
        return [self._line(record) for _, record in records], last

    def tail(self, count: int | None) -> tuple[list[str], int]:
        """The last ``count`` lines (all buffered when None) and the number of the last one."""
        lines, last = self.since(0)
        return (lines if count is None else lines[max(0, len(lines) - count) :]), last
