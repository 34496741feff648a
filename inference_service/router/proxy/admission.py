"""Per-model admission: at most ``parallel`` requests upstream, the rest in a bounded fair queue.

llama-server queues excess requests itself, but blindly and without bound; admitting
here shares a busy model fairly between keys (weighted fair queueing, priority within a
key: :mod:`~inference_service.router.tenancy.fairness`), bounds memory, and turns overload
into a quick 503 with ``Retry-After`` instead of a hung client.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

from inference_service.router.tenancy.fairness import FairQueue


class QueueFull(Exception):
    pass


class QueueTimeout(Exception):
    pass


class AdmissionQueue:
    """A counting semaphore whose waiters are served fairly across keys, by priority (high first)
    then arrival within a key.

    A waiter that gives up (timeout, cancellation) is counted out at once; its entry is
    skipped when reached, and its key's heap rebuilt whenever abandoned entries outnumber
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
        self._waiters: FairQueue[asyncio.Future[None]] = FairQueue()
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
    async def slot(
        self, priority: int = 2, timeout_s: float | None = None, tenant: str = "", weight: float = 1.0
    ) -> AsyncIterator[None]:
        """Hold one slot; ``tenant`` (a key's name) and its ``weight``: its share when the model is busy."""
        await self._acquire(priority, timeout_s, tenant, weight)
        try:
            yield
        finally:
            self._release()

    async def _acquire(
        self, priority: int, timeout_s: float | None = None, tenant: str = "", weight: float = 1.0
    ) -> None:
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        if self._has_room() and not self.waiting:
            self.active += 1
            self._waiters.charge(tenant, weight)
            return
        if self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests already queued (queue_size {self.max_queue})")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = self._waiters.push(future, tenant, weight, priority)
        self.waiting += 1
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=max(timeout_s, 0.0))
        except (TimeoutError, asyncio.CancelledError) as error:
            if future.done() and not future.cancelled():
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                future.cancel()
                self._waiters.cancel(entry)
                self.waiting -= 1
            if isinstance(error, TimeoutError):
                raise QueueTimeout(f"waited {timeout_s:g}s for a free slot") from None
            raise

    def _release(self) -> None:
        self.active -= 1
        self._admit_waiters()  # the slot passes straight to the best waiter, not to a newcomer

    def _has_room(self) -> bool:
        return self.parallel is None or self.active < self.parallel

    def _admit_waiters(self) -> None:
        """Hand the free slots to the waiters whose turn it is (fair share, then priority and arrival)."""
        while self._has_room() and (future := self._waiters.pop()) is not None:
            self.waiting -= 1
            self.active += 1
            future.set_result(None)

    def observe_service(self, started: float) -> None:
        """Fold one request's service time (admitted until done) into the moving average."""
        seconds = time.monotonic() - started
        self.service_s = seconds if not self._observed else 0.8 * self.service_s + 0.2 * seconds
        self._observed = True

    @property
    def heap_size(self) -> int:
        """Entries held, live or abandoned (for tests and diagnostics)."""
        return self._waiters.entries


def retry_after_s(ahead: int, parallel: int, service_s: float, load_s: float = 0.0) -> int:
    """Seconds a refused client should wait before trying again.

    ``ceil((ahead // parallel + 1) * service_s + load_s)``, clamped to [1, 60]: the
    requests queued ahead of it are served ``parallel`` at a time, each batch taking the
    model's observed service time; one more batch for the client's own turn; plus the
    observed load time when the model is not loaded.
    """
    batches = ahead // max(parallel, 1) + 1
    return max(1, min(60, math.ceil(batches * service_s + load_s)))
