"""Per-model admission: at most ``parallel`` requests upstream, the rest in a bounded priority queue.

llama-server queues excess requests itself, but blindly and without bound; admitting
here lets high-priority work overtake, bounds memory, and turns overload into a quick
503 with ``Retry-After`` instead of a hung client.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


@dataclass(order=True)
class _Waiter:
    sort_key: tuple[int, int]
    future: asyncio.Future[None] = field(compare=False)


class AdmissionQueue:
    """A counting semaphore whose waiters are served by priority (high first), then arrival.

    A waiter that gives up (timeout, cancellation) is counted out at once; its heap entry
    is skipped when reached, and the heap is rebuilt whenever abandoned entries outnumber
    live ones - so abandoned waiters cost O(log n) each and never pile up.
    """

    #: Before anything was observed: a short chat answer on a small model, and a small model's load.
    default_service_s = 1.0
    default_load_s = 5.0

    def __init__(self, parallel: int | None, max_queue: int, timeout_s: float) -> None:
        """``parallel=None``: no cap - every request is admitted at once (the runtime schedules itself)."""
        self.service_s = self.default_service_s
        self._observed = False
        self.active = 0
        self.waiting = 0
        self._waiters: list[_Waiter] = []
        self._arrivals = itertools.count()
        self.configure(parallel, max_queue, timeout_s)

    def configure(self, parallel: int | None, max_queue: int, timeout_s: float) -> None:
        """Take new limits at once (a config reload), without touching a request it holds.

        A raised ``parallel`` admits waiters now, as many as it allows; a lowered one lets
        the running requests finish and admits the next only once fewer run. A lowered
        ``max_queue`` refuses newcomers until the queue is below it (nobody queued is dropped),
        and ``timeout_s`` applies to requests from now on (a waiter keeps its deadline).
        """
        self.parallel = parallel
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self._admit_waiters()

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = 2, timeout_s: float | None = None) -> AsyncIterator[None]:
        await self._acquire(priority, self.timeout_s if timeout_s is None else timeout_s)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int, timeout_s: float | None = None) -> None:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self._has_room() and not self.waiting:
            self.active += 1
            return
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests already queued (queue_size {self.max_queue})")
        waiter = _Waiter((-priority, next(self._arrivals)), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        self.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=max(timeout_s, 0.0))
        except (TimeoutError, asyncio.CancelledError) as error:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                waiter.future.cancel()
                self._abandon()
            if isinstance(error, TimeoutError):
                raise QueueTimeout(f"waited {timeout_s:g}s for a free slot") from None
            raise

    def _abandon(self) -> None:
        self.waiting -= 1
        if len(self._waiters) > 2 * self.waiting + 16:
            self._waiters = [w for w in self._waiters if not w.future.done()]
            heapq.heapify(self._waiters)

    def _release(self) -> None:
        self.active -= 1
        self._admit_waiters()  # the slot passes straight to the best waiter, not to a newcomer

    def _has_room(self) -> bool:
        return self.parallel is None or self.active < self.parallel

    def _admit_waiters(self) -> None:
        """Hand the free slots to the best waiters (priority, then arrival); abandoned entries are dropped."""
        while self._waiters and self._has_room():
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                self.waiting -= 1
                self.active += 1
                waiter.future.set_result(None)

    def observe_service(self, started: float) -> None:
        """Fold one request's service time (admitted until done) into the moving average."""
        seconds = time.monotonic() - started
        self.service_s = seconds if not self._observed else 0.8 * self.service_s + 0.2 * seconds
        self._observed = True

    @property
    def heap_size(self) -> int:
        """Entries held, live or abandoned (for tests and diagnostics)."""
        return len(self._waiters)


def retry_after_s(ahead: int, parallel: int, service_s: float, load_s: float = 0.0) -> int:
    """Seconds a refused client should wait before trying again.

    ``ceil((ahead // parallel + 1) * service_s + load_s)``, clamped to [1, 60]: the
    requests queued ahead of it are served ``parallel`` at a time, each batch taking the
    model's observed service time; one more batch for the client's own turn; plus the
    observed load time when the model is not loaded.
    """
    batches = ahead // max(parallel, 1) + 1
    return max(1, min(60, math.ceil(batches * service_s + load_s)))
