"""Lease accounting: one model's requests, from arrival until their response is done.

A request is counted the moment it is leased, before the model is ready: a ``waiting``
lease keeps its model from being evicted as idle (the capacity scheduler decides when a
queue has waited long enough), an ``in_flight`` one is being served and is drained
before any unload. Callers waiting for the model to be ready (a lease, or a plain load)
are *waiters*, answered all at once when the model serves, fails or goes away.

The :class:`LeaseBook` is owned by the model's actor: request coroutines reach it only
through the actor's methods, and every method here is synchronous - it never awaits - so
on the one event loop each change is complete before any other task looks. Its counters
are read-only from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inference_service.runtimes.base import Endpoint

if TYPE_CHECKING:
    from inference_service.supervisor.model import ModelActor


class LeaseMoved(Exception):
    """Raised to a lease waiting on a replica that left its model's set (a reload lowered ``replicas``).

    Never reaches a caller: :meth:`Lease.ready` catches it, and the set's ``rebalance`` puts
    the lease on a replica that stays.
    """


@dataclass(eq=False)
class Lease:
    """One request's claim on a model, from before it is ready until its response is done."""

    actor: ModelActor
    priority: int
    endpoint: Endpoint | None = None
    closed: bool = False
    #: Called just before the lease is served: a model with replicas may move it to another (see replicas/).
    rebalance: Callable[[Lease], None] | None = None

    @property
    def replica(self) -> int | None:
        """Which replica of its model the lease is on; None when the model has one."""
        return self.actor.config.replica_index if self.actor.config.replicas > 1 else None

    def ready_now(self) -> Endpoint | None:
        """The endpoint at once if the model is serving (the common case: no waiting, no task), else None."""
        if self.endpoint is None:
            if self.rebalance is not None:
                self.rebalance(self)
            self.actor.serve_if_loaded(self)
        return self.endpoint

    async def ready(self) -> Endpoint:
        """The model's endpoint, loading it (or waiting for capacity) if needed; counts as in flight from then."""
        while self.endpoint is None:
            if self.rebalance is not None:
                self.rebalance(self)
            try:
                self.endpoint = await self.actor.wait_ready(self.priority, lease=self)
            except LeaseMoved:
                if self.rebalance is None:  # only a set's leases move, and the set gives each its rebalance
                    raise
        return self.endpoint


@dataclass(eq=False)
class Waiter:
    """A caller waiting for the model to serve: a lease (in flight once answered) or a plain load."""

    future: asyncio.Future[Endpoint]
    priority: int
    lease: Lease | None = None


class LeaseBook:
    """Counts of one model's leases and the callers waiting for it to serve."""

    def __init__(self) -> None:
        self._leased = 0
        self._in_flight = 0
        self._last_used: float | None = None
        self._none_in_flight = asyncio.Event()
        self._none_in_flight.set()
        self._waiters: list[Waiter] = []
        #: Its replica left the model's set: a lease that waits here is told to move (:class:`LeaseMoved`).
        self.moved_out = False

    @property
    def in_flight(self) -> int:
        """Leases being served (they hold the endpoint)."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Leased requests not yet being served."""
        return self._leased - self._in_flight

    @property
    def leased(self) -> int:
        return self._leased

    @property
    def last_used(self) -> float | None:
        """Wall-clock time a request last began or ended being served."""
        return self._last_used

    @property
    def has_waiters(self) -> bool:
        return any(not waiter.future.done() for waiter in self._waiters)

    @property
    def wanted_priority(self) -> int | None:
        """The highest priority among the callers still waiting, None when nobody does."""
        return max((w.priority for w in self._waiters if not w.future.done()), default=None)

    # ----------------------------------------------------------------- leases

    def open(self, actor: ModelActor, priority: int) -> Lease:
        self._leased += 1
        return Lease(actor, priority)

    def hand_over(self, lease: Lease, to: LeaseBook) -> None:
        """Move a lease not yet served to another book (another replica of its model)."""
        assert lease.endpoint is None and not lease.closed
        self._leased -= 1
        to._leased += 1

    def serve(self, lease: Lease | None, endpoint: Endpoint) -> Endpoint:
        """Hand out ``endpoint``; a lease counts as in flight from this instant (not from when its caller resumes)."""
        if lease is not None and not lease.closed and lease.endpoint is None:
            lease.endpoint = endpoint
            self._in_flight += 1
            self._none_in_flight.clear()
            self._last_used = time.time()
        return endpoint

    def close(self, lease: Lease) -> bool:
        """End ``lease`` (again is a no-op); whether anything changed."""
        if lease.closed:
            return False
        lease.closed = True
        self._leased -= 1
        if lease.endpoint is not None:
            self._in_flight -= 1
            self._last_used = time.time()
            if self._in_flight == 0:
                self._none_in_flight.set()
        return True

    async def drained(self) -> None:
        """Return once no lease is in flight."""
        while self._in_flight:
            await self._none_in_flight.wait()

    # ----------------------------------------------------------------- waiters

    def wait(self, priority: int, lease: Lease | None) -> Waiter:
        waiter = Waiter(asyncio.get_running_loop().create_future(), priority, lease)
        self._waiters.append(waiter)
        return waiter

    def forget(self, waiter: Waiter) -> None:
        """The caller stopped waiting (answered, cancelled or timed out)."""
        if not waiter.future.done():
            waiter.future.cancel()
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def resolve_waiters(self, endpoint: Endpoint) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_result(self.serve(waiter.lease, endpoint))

    def move_out(self) -> None:
        """Its replica left the model's set: the leases waiting here, and any that comes to wait from now
        on, move to a replica that stays (in-flight ones finish here; a plain load waits on)."""
        self.moved_out = True
        leases = [waiter for waiter in self._waiters if waiter.lease is not None]
        for waiter in leases:
            self._waiters.remove(waiter)
            if not waiter.future.done():
                waiter.future.set_exception(LeaseMoved())

    def reject_waiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)
