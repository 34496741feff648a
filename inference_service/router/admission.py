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
    """A counting semaphore whose waiters are served by priority (high first), then arrival."""

    def __init__(self, parallel: int | None, max_queue: int, timeout_s: float) -> None:
        """``parallel=None``: no cap - every request is admitted at once (the runtime schedules itself)."""
        self.parallel = parallel
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.active = 0
        self._waiters: list[_Waiter] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.future.done())

    @contextlib.asynccontextmanager
    async def slot(self, priority: int = 2) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: int) -> None:
        if (self.parallel is None or self.active < self.parallel) and not self.waiting:
            self.active += 1
            return
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests already queued (queue_size {self.max_queue})")
        waiter = _Waiter((-priority, next(self._arrivals)), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiters, waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), timeout=self.timeout_s)
        except (TimeoutError, asyncio.CancelledError) as error:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            waiter.future.cancel()
            if isinstance(error, asyncio.TimeoutError):
                raise QueueTimeout(f"waited {self.timeout_s:g}s for a free slot") from None
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot passes straight to the waiter
                return
        self.active -= 1
