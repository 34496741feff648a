"""Weighted fair queueing across keys: who gets a model's next free slot.

Each key's waiting requests are a *flow*, ordered within the key by priority, then arrival.
Across flows the queue serves by start-time fair queueing, one request as the unit of work:
a flow's next request gets a virtual start tag - the later of the queue's virtual time and the
finish tag of the flow's previous request - and finishes ``1 / weight`` after it starts. The
flow whose next request has the smallest start tag goes next, and the virtual time advances to
it. So a key with 60 requests queued cannot make another key's one request wait behind all 60:
the newcomer starts at the current virtual time while the flood's next request starts a whole
unit later - it waits about one service time per active key. A key of weight 2 gets twice the
share of a busy model as a key of weight 1; a key that was idle gains no credit (its tag is
never below the virtual time). A request admitted at once, with a slot free, is charged the same
way (:meth:`FairQueue.charge`): the flood's first request counts against it too.

Per request that is two heap operations on small heaps (the keys with requests waiting, and the
key's own); a request that gives up is marked and skipped lazily, and a flow's heap is rebuilt
once abandoned entries outnumber live ones, as in the admission queue before it.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(order=True)
class Entry(Generic[T]):
    """One waiting request: ordered within its flow by priority (high first), then arrival."""

    sort_key: tuple[int, int]
    item: T = field(compare=False)
    flow: _Flow[T] = field(compare=False, repr=False)
    cancelled: bool = field(default=False, compare=False)


class _Flow(Generic[T]):
    __slots__ = ("finish", "heap", "live", "scheduled", "weight")

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.heap: list[Entry[T]] = []
        self.live = 0
        self.finish = 0.0  # the virtual finish tag of the flow's last request served
        self.scheduled = False  # whether the flow has an entry in the queue's ready heap


class FairQueue(Generic[T]):
    def __init__(self) -> None:
        self._flows: dict[str, _Flow[T]] = {}
        self._ready: list[tuple[float, int, _Flow[T]]] = []  # (start tag of its next request, tie-break, flow)
        self._virtual = 0.0
        self._sequence = itertools.count()
        self.live = 0

    def push(self, item: T, flow: str, weight: float = 1.0, priority: int = 2) -> Entry[T]:
        """Queue ``item`` for the key ``flow``; the entry is what :meth:`cancel` takes."""
        queue = self._flows.get(flow)
        if queue is None:
            queue = self._flows[flow] = _Flow(weight)
        queue.weight = weight  # a reload may have changed it
        entry = Entry((-priority, next(self._sequence)), item, queue)
        heapq.heappush(queue.heap, entry)
        queue.live += 1
        self.live += 1
        if not queue.scheduled:
            queue.scheduled = True
            heapq.heappush(self._ready, (max(self._virtual, queue.finish), next(self._sequence), queue))
        return entry

    def charge(self, flow: str, weight: float = 1.0) -> None:
        """A request of ``flow`` admitted at once, without waiting: it is service all the same, so its
        key's finish tag and the virtual time move as if it had been served from the queue (else the
        request a key got in first would not count against it once others queue)."""
        queue = self._flows.get(flow)
        if queue is None:
            queue = self._flows[flow] = _Flow(weight)
        start = max(self._virtual, queue.finish)
        self._virtual = start
        queue.finish = start + 1 / weight

    def cancel(self, entry: Entry[T]) -> None:
        """A request that gave up: skipped when reached; its flow's heap is rebuilt if such entries pile up."""
        if entry.cancelled:
            return
        entry.cancelled = True
        flow = entry.flow
        flow.live -= 1
        self.live -= 1
        if len(flow.heap) > 2 * flow.live + 16:
            flow.heap = [waiting for waiting in flow.heap if not waiting.cancelled]
            heapq.heapify(flow.heap)

    def pop(self) -> T | None:
        """The next request by fair share (None: nobody waits)."""
        while self._ready:
            start, _, flow = heapq.heappop(self._ready)
            while flow.heap and flow.heap[0].cancelled:
                heapq.heappop(flow.heap)
            if not flow.heap:
                flow.scheduled = False
                continue
            entry = heapq.heappop(flow.heap)
            flow.live -= 1
            self.live -= 1
            self._virtual = max(self._virtual, start)  # a tag set before later charges may lag behind
            flow.finish = start + 1 / flow.weight
            if flow.live:
                heapq.heappush(self._ready, (flow.finish, next(self._sequence), flow))
            else:
                flow.scheduled = False
                flow.heap.clear()  # only abandoned entries can be left
            return entry.item
        return None

    @property
    def entries(self) -> int:
        """Entries held, live or abandoned (for tests and diagnostics)."""
        return sum(len(flow.heap) for flow in self._flows.values())
