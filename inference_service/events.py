"""The event bus: what happened in the service, told to whoever listens, never waited on.

The supervisor publishes model state changes, load progress and evictions; the llama.cpp
runtime its KV cache saves and restores; the router request activity, config reloads and
memory warnings. Subscribers (``GET /v1/events``, the dashboard, ``inference-service
events``) each get a bounded buffer: a publisher never awaits, and a subscriber that falls
behind loses the oldest events it has not read and learns how many from ``dropped`` on the
next event it does read. A slow console can therefore never slow down a request.

This module sits below the runtimes, the supervisor and the router (it imports none of
them), so each can publish without knowing who listens.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: Event types, by publisher. Model state changes carry ``state`` (and ``reason`` when failed).
MODEL_STATE = "model_state"
LOAD_PROGRESS = "load_progress"
EVICTION = "eviction"
CONFIG_RELOAD = "config_reload"
REQUEST = "request"
#: A llamacpp model's slots saved before a stop or restored after a start (``action``), by its runtime.
KV_CACHE = "kv_cache"
#: A child's resident memory went past its estimate by more than the margin (router's memory watch).
MEMORY_WARNING = "memory_warning"
#: A replica set grew or shrank (``replica``, ``direction``, ``reason``, ``detail``), by the supervisor.
REPLICA_SCALED = "replica_scaled"
EVENT_TYPES = frozenset(
    {MODEL_STATE, LOAD_PROGRESS, EVICTION, CONFIG_RELOAD, REQUEST, KV_CACHE, MEMORY_WARNING, REPLICA_SCALED}
)

DEFAULT_SUBSCRIBER_BUFFER = 1000


@dataclass(frozen=True)
class Event:
    """One thing that happened. ``seq`` increases by one per published event, bus-wide."""

    seq: int
    type: str
    time: float
    model: str | None
    data: dict[str, Any]

    def as_dict(self, dropped: int = 0) -> dict[str, Any]:
        payload = {"seq": self.seq, "type": self.type, "time": self.time, "model": self.model, **self.data}
        if dropped:
            payload["dropped"] = dropped
        return payload


@dataclass(eq=False)
class Subscription:
    """One listener's bounded buffer and filters. Iterate it to receive ``(event, dropped)``.

    ``key`` set makes it one API key's view (a tenant without the ``admin`` scope): an event that
    names a key (``request``) only when it names this one, and of the events that name none only
    those about a model - a service-wide event (a config reload's reason) may name anything, other
    keys included. A dictionary lookup per event: the bus's cost stays a few comparisons.
    """

    models: frozenset[str] | None
    types: frozenset[str] | None
    capacity: int
    key: str | None = None
    _buffer: deque[Event] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _dropped: int = 0

    def wants(self, event: Event) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        if self.key is not None and not self._concerns_key(event):
            return False
        return self.models is None or event.model is None or event.model in self.models

    def _concerns_key(self, event: Event) -> bool:
        owner = event.data.get("key")
        return owner == self.key if owner is not None else event.model is not None

    def offer(self, event: Event) -> None:
        """Buffer ``event`` without ever blocking: when full, the oldest unread event makes room."""
        if len(self._buffer) >= self.capacity:
            self._buffer.popleft()
            self._dropped += 1
        self._buffer.append(event)
        self._ready.set()

    async def next(self) -> tuple[Event, int]:
        """The next event and how many were dropped just before it."""
        while not self._buffer:
            self._ready.clear()
            await self._ready.wait()
        dropped, self._dropped = self._dropped, 0
        return self._buffer.popleft(), dropped

    def __aiter__(self) -> AsyncIterator[tuple[Event, int]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tuple[Event, int]]:
        while True:
            yield await self.next()


class EventBus:
    """Fan-out of :class:`Event` to every :class:`Subscription` whose filters match."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []
        self._seq = itertools.count(1)
        #: Exceptions raised by listeners (each logged with its traceback); a leak of bugs shows here.
        self.listener_errors = 0

    def listen(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` synchronously with every event (for cheap in-process bookkeeping such as metrics)."""
        self._listeners.append(listener)

    def publish(self, type: str, model: str | None = None, **data: Any) -> Event:
        """Record an event; synchronous and O(subscribers), safe to call from any code on the loop.

        Never raises: publishers call this in the middle of a state change (a model's actor
        announcing ``loading`` before it starts the runtime), so a listener's bug must not
        abort the change. It is logged and counted instead, and the other listeners still run.
        """
        event = Event(seq=next(self._seq), type=type, time=time.time(), model=model, data=data)
        for subscription in self._subscriptions:
            if subscription.wants(event):
                subscription.offer(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                logger.exception("event listener %r failed on %s event %d", listener, type, event.seq)
        return event

    def subscribe(
        self,
        models: Collection[str] | None = None,
        types: Collection[str] | None = None,
        capacity: int = DEFAULT_SUBSCRIBER_BUFFER,
        key: str | None = None,
    ) -> Subscription:
        """A new listener; call :meth:`unsubscribe` when done (the SSE route does so in ``finally``).
        ``key``: one API key's view only (see :class:`Subscription`)."""
        subscription = Subscription(
            models=frozenset(models) if models else None,
            types=frozenset(types) if types else None,
            capacity=capacity,
            key=key,
        )
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)
