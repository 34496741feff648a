"""Terminal progress that stays readable in CI logs as well as on a TTY."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``[step] message`` lines with the elapsed time, and a byte counter for downloads.

    On a TTY the byte counter redraws one line; elsewhere (CI logs) it prints at most one
    line per ``log_interval_s`` so a 10-minute step is never silent and never floods.
    """

    def __init__(self, stream: TextIO = sys.stderr, log_interval_s: float = 5.0) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._tty = stream.isatty()
        self._log_interval_s = log_interval_s
        self._last_print = 0.0

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self._started)
        return f"{seconds // 60:d}:{seconds % 60:02d}"

    def step(self, message: str) -> None:
        self._stream.write(f"[{self.elapsed()}] {message}\n")
        self._stream.flush()

    def update(self, label: str, done: int, total: int | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_print < (0.2 if self._tty else self._log_interval_s):
            return
        self._last_print = now
        if total:
            width = 30
            filled = int(width * done / total)
            text = f"{label} [{'#' * filled}{'.' * (width - filled)}] {done / 2**20:.1f}/{total / 2**20:.1f} MiB"
        else:
            text = f"{label} {done / 2**20:.1f} MiB"
        if self._tty:
            self._stream.write(f"\r[{self.elapsed()}] {text}\x1b[K")
            if force:
                self._stream.write("\n")
        else:
            self._stream.write(f"[{self.elapsed()}] {text}\n")
        self._stream.flush()
