"""Let SIGTERM/SIGINT interrupt a long start-up step without swallowing the signal."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


def being_cancelled() -> bool:
    """Whether the running task itself has been asked to stop (as opposed to something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextlib.contextmanager
def cancelled_by_stop_signals(task: asyncio.Task[None]) -> Iterator[None]:
    """While the block runs, SIGTERM/SIGINT also cancel ``task``, then reach the handler installed before.

    Only handlers that are Python callables (uvicorn's, Python's SIGINT default) are chained;
    a signal left at its OS default still ends the process, and PR_SET_PDEATHSIG the children.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    chained = {sig: handler for sig, handler in previous.items() if callable(handler)}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(task.cancel)  # wakes the loop, which may be blocked in select()
        chained[signal.Signals(sig)](sig, frame)

    for sig in chained:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in chained.items():
            signal.signal(sig, handler)
