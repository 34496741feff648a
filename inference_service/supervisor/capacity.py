"""Capacity: who may be resident, who waits for room, and whom to evict for it.

The :class:`CapacityScheduler` owns one thing: the set of local models that hold
capacity (loading, loaded, restarting or still unloading) and the queue of models
waiting for some. It never changes a model's state itself: it *asks* the model's actor
(grant, evict, yield) and the actor checks, at the moment it handles the message,
that the decision still holds. A stale decision is refused and the scheduler plans
again, so nothing here needs a lock.

The rules, in order:

1. A model that can never fit (its estimate exceeds ``memory_budget_mb``, or
   ``max_loaded_models`` is 0) is refused at once: :class:`InsufficientCapacity`, a 507.
2. Waiting models are served by the highest priority among their requests, then by
   arrival. The head of that queue is granted room as soon as it fits; the models
   behind it wait (so a stream of small models cannot starve a big one).
3. To make room for the head, idle models are evicted - the fewest evictions that free
   enough, ties to the least recently used (:func:`choose_evictions`); a pinned model never
   is, and the room pinned models hold counts as taken for good (rule 1 included). A model with
   requests queued for it is not idle: it keeps serving them (no thrash), until the
   head has waited ``swap_max_wait_s`` (and the busy model has served at least that
   long). Then the busy models it needs are told to *yield*: they take no new
   requests, finish the ones in flight and are evicted.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from inference_service.config import RuntimeKind, Settings
from inference_service.supervisor.footprint import model_estimate_mb
from inference_service.supervisor.state import ModelState

logger = logging.getLogger(__name__)

#: Above this many idle candidates the exact search (every subset) gives way to a greedy choice.
_EXACT_SEARCH_LIMIT = 12


@dataclass(frozen=True)
class Candidate:
    """A resident model (one replica of it) as eviction sees it."""

    model_id: str  # the tenant's name: a model's id, ``id#i`` for one of its replicas
    footprint_mb: int
    idle_since: float
    pinned: bool = False


def choose_evictions(
    candidates: Sequence[Candidate],
    *,
    resident_count: int,
    resident_mb: int,
    need_mb: int,
    max_models: int | None,
    budget_mb: int | None,
) -> list[Candidate] | None:
    """The fewest ``candidates`` whose eviction makes room for a model needing ``need_mb``.

    ``resident_*`` describe everything holding capacity now (candidates included). Among
    sets of equal size the one whose most recently used member is the oldest wins (then
    its next member, and so on): least recently used first. A pinned candidate is never
    chosen. None when no set suffices.
    """
    candidates = [candidate for candidate in candidates if not candidate.pinned]

    def fits(chosen: Sequence[Candidate]) -> bool:
        count_ok = max_models is None or resident_count - len(chosen) + 1 <= max_models
        memory_ok = budget_mb is None or resident_mb - sum(c.footprint_mb for c in chosen) + need_mb <= budget_mb
        return count_ok and memory_ok

    def recency(chosen: Sequence[Candidate]) -> list[float]:
        return sorted((c.idle_since for c in chosen), reverse=True)

    if len(candidates) > _EXACT_SEARCH_LIMIT:
        # Greedy: the largest first (fewest evictions for memory), the least recently used among equals.
        chosen: list[Candidate] = []
        for candidate in sorted(candidates, key=lambda c: (-c.footprint_mb, c.idle_since)):
            if fits(chosen):
                break
            chosen.append(candidate)
        return chosen if fits(chosen) else None
    for size in range(len(candidates) + 1):
        fitting = [list(combo) for combo in itertools.combinations(candidates, size) if fits(combo)]
        if fitting:
            return min(fitting, key=recency)
    return None


class Tenant(Protocol):
    """What the scheduler reads from, and asks of, one model's actor."""

    model_id: str
    state: ModelState
    closed: bool

    @property
    def name(self) -> str:
        """Unique among tenants: the model id, with the replica's index when it has several."""

    @property
    def in_flight(self) -> int: ...

    @property
    def footprint_mb(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def idle_since(self) -> float: ...

    @property
    def serving_since(self) -> float: ...

    @property
    def wanted_priority(self) -> int | None: ...

    @property
    def pinned(self) -> bool: ...

    def grant(self) -> None: ...

    def evict(self, reason: str) -> None: ...

    def yield_slot(self, reason: str) -> None: ...

    def reopen(self) -> None: ...


class CapacityScheduler:
    def __init__(self, settings: Settings) -> None:
        self.configure(settings)
        self._holders: set[Tenant] = set()
        self._pending: dict[Tenant, float] = {}  # tenant -> monotonic time it started waiting
        self._evicting: set[Tenant] = set()
        self._poked = False
        self._timer: asyncio.TimerHandle | None = None

    def configure(self, settings: Settings) -> None:
        """The limits in force (at start-up, and again on a config reload: from the next plan on)."""
        self._max_models = settings.max_loaded_models
        self._budget_mb = settings.memory_budget_mb
        self._swap_max_wait_s = settings.swap_max_wait_s

    @property
    def limited(self) -> bool:
        return self._max_models is not None or self._budget_mb is not None

    def never_fits(self, tenant: Tenant) -> str | None:
        """Why ``tenant`` could not be loaded even with every other model evicted - every one that
        may be: the pinned models resident stay - or None."""
        if self._max_models == 0:
            return f"cannot load {tenant.model_id!r}: max_loaded_models = 0"
        if self._budget_mb is not None and tenant.footprint_mb > self._budget_mb:
            return (
                f"cannot load {tenant.model_id!r}: it needs ~{tenant.footprint_mb} MB, "
                f"more than the whole memory_budget_mb={self._budget_mb}"
            )
        if not self.fit_together([tenant]):
            pinned = sorted(t.name for t in self._pinned_residents([tenant]))
            return (
                f"cannot load {tenant.model_id!r} (~{tenant.footprint_mb} MB) beside the pinned models {pinned}, "
                "which are never evicted (an admin unload of one makes room)"
            )
        return None

    def fit_together(self, tenants: Sequence[Tenant]) -> bool:
        """Whether ``tenants`` could all be resident at the same time (others evicted if need be: not pinned ones)."""
        staying = [*tenants, *self._pinned_residents(tenants)]
        count_ok = self._max_models is None or len(staying) <= self._max_models
        memory_ok = self._budget_mb is None or sum(t.footprint_mb for t in staying) <= self._budget_mb
        return count_ok and memory_ok

    def has_room(self, tenant: Tenant) -> bool:
        """Whether ``tenant`` would be granted room at once, evicting nobody and passing nobody waiting."""
        return not self.limited or (not self._pending and self._fits(tenant))

    def _pinned_residents(self, besides: Sequence[Tenant]) -> list[Tenant]:
        """The pinned models holding room (not on their way out), other than ``besides``: room taken for good."""
        return [t for t in self._holders if t.pinned and t not in besides and t.state != ModelState.UNLOADING]

    def holds(self, tenant: Tenant) -> bool:
        return tenant in self._holders

    def waiting_since(self, tenant: Tenant) -> float | None:
        return self._pending.get(tenant)

    def request(self, tenant: Tenant) -> None:
        """``tenant`` wants room; its actor gets ``grant()`` when it has some."""
        if tenant not in self._holders:
            self._pending.setdefault(tenant, time.monotonic())
            self.poke()

    def withdraw(self, tenant: Tenant) -> None:
        self._pending.pop(tenant, None)
        self.poke()

    def release(self, tenant: Tenant) -> None:
        """``tenant`` no longer occupies anything (unloaded or failed)."""
        self._holders.discard(tenant)
        self._evicting.discard(tenant)
        self.poke()

    def evict_refused(self, tenant: Tenant) -> None:
        """The actor found the eviction stale (a request got in first): plan again."""
        self._evicting.discard(tenant)
        self.poke()

    def poke(self) -> None:
        """Something changed (a request ended, a model left): plan once, soon, however many pokes came."""
        if self._poked or not (self._pending or self._evicting or any(t.closed for t in self._holders)):
            return
        self._poked = True
        asyncio.get_running_loop().call_soon(self._schedule)

    # ----------------------------------------------------------------- planning

    def _fits(self, tenant: Tenant) -> bool:
        count_ok = self._max_models is None or len(self._holders) + 1 <= self._max_models
        used = sum(holder.footprint_mb for holder in self._holders)
        memory_ok = self._budget_mb is None or used + tenant.footprint_mb <= self._budget_mb
        return count_ok and memory_ok

    def _schedule(self) -> None:
        self._poked = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A model whose every request gave up stays queued but is passed over until one comes back.
        wanted = [t for t in self._pending if t.wanted_priority is not None]
        queue = sorted(wanted, key=lambda t: (-(t.wanted_priority or 0), self._pending[t]))
        if not queue:
            # Nobody waits any more (the requests that made a model yield gave up): let yielding models serve again.
            for tenant in self._holders:
                if tenant.closed and tenant not in self._evicting:
                    tenant.reopen()
        for tenant in queue:
            if self._fits(tenant):
                del self._pending[tenant]
                self._holders.add(tenant)
                tenant.grant()
                continue
            self._make_room(tenant)
            return  # the head waits; nobody behind it may take the room it is waiting for

    def _make_room(self, head: Tenant) -> None:
        now = time.monotonic()

        def turn_left_s(tenant: Tenant) -> float:
            """How much longer ``tenant`` may keep serving its queue while ``head`` waits.

            A turn lasts ``swap_max_wait_s`` from when the head began to wait or the tenant
            began to serve, whichever is later: a model that took long to load still gets
            its turn, instead of yielding the moment it is ready.
            """
            return max(self._pending[head], tenant.serving_since) + self._swap_max_wait_s - now

        # Models already on their way out count as gone: their room is coming.
        staying = [t for t in self._holders if t not in self._evicting and t.state != ModelState.UNLOADING]
        loaded = [t for t in staying if t.state == ModelState.LOADED]
        idle = [t for t in loaded if t.in_flight == 0 and (t.waiting == 0 or t.closed or turn_left_s(t) <= 0)]
        choose = functools.partial(
            choose_evictions,
            resident_count=len(staying),
            resident_mb=sum(t.footprint_mb for t in staying),
            need_mb=head.footprint_mb,
            max_models=self._max_models,
            budget_mb=self._budget_mb,
        )
        by_id = {t.name: t for t in loaded}
        choice = choose([self._candidate(t) for t in idle])
        if choice == []:
            return  # enough is leaving already
        if choice is not None:
            for candidate in choice:
                victim = by_id[candidate.model_id]
                self._evicting.add(victim)
                logger.info("evicting %s to make room for %s", victim.name, head.name)
                victim.evict(f"capacity: making room for {head.model_id}")
            return
        busy = [t for t in loaded if t not in idle and not t.closed]
        choice = choose([self._candidate(t) for t in idle + busy])
        for candidate in choice or []:
            tenant = by_id[candidate.model_id]
            if tenant not in busy:
                continue
            left_s = turn_left_s(tenant)
            if left_s <= 0:
                waited_s = now - self._pending[head]
                tenant.yield_slot(f"{head.model_id} waited {waited_s:.1f}s (swap_max_wait_s={self._swap_max_wait_s:g})")
            elif self._timer is None or self._timer.when() > asyncio.get_running_loop().time() + left_s:
                # It keeps serving its queue for now; look again when its turn is over.
                if self._timer is not None:
                    self._timer.cancel()
                self._timer = asyncio.get_running_loop().call_later(left_s, self.poke)

    @staticmethod
    def _candidate(tenant: Tenant) -> Candidate:
        return Candidate(tenant.name, tenant.footprint_mb, tenant.idle_since, tenant.pinned)


def pinned_overflow(settings: Settings, holds_capacity: Callable[[RuntimeKind], bool]) -> str | None:
    """Why ``settings``' pinned models could not all be resident at once, or None.

    They are never evicted, so the scheduler could not keep that promise: a config error at
    start-up (one line, exit 2) and a rejected reload (the running config stays). Counted as the
    scheduler counts: every replica of the models whose runtime kind ``holds_capacity`` (runtimes.factory's,
    passed in: the supervisor knows runtimes by instance, not kind), with its estimates. Reads
    GGUF headers: off the event loop.
    """
    pinned = [model for model in settings.models.values() if model.pinned and holds_capacity(model.runtime)]
    names = ", ".join(model.id for model in pinned)
    max_models, budget_mb = settings.max_loaded_models, settings.memory_budget_mb
    count = sum(model.replicas for model in pinned)
    if max_models is not None and count > max_models:
        counted = f"{count} pinned models" + (" and replicas" if count > len(pinned) else "")
        return f"models.*.pinned: {counted} ({names}) exceed max_loaded_models={max_models}"
    need_mb = sum(model_estimate_mb(settings, model) * model.replicas for model in pinned)
    if budget_mb is not None and need_mb > budget_mb:
        return (
            f"models.*.pinned: the pinned models ({names}) need ~{need_mb} MB, more than memory_budget_mb={budget_mb}"
        )
    return None
