"""Which replica of a model serves a request: cache affinity with bounded load.

A llama-server replica answers a follow-up turn fast only if it already holds the
conversation's prefix in its KV cache (prefill is most of a turn's cost). So a request
goes to the replica that last served the longest prefix it shares with an earlier one -
unless that replica is overloaded: more than ``(1 + epsilon)`` times its share of the
set's requests (bounded-load consistent hashing, Mirrokni et al. 2018), so a flood of one
conversation spreads instead of piling onto one process. Without a known prefix, the
least loaded replica serves. An explicit session key (the router passes the ``user``
field or an ``X-Session-Id`` header) pins a conversation to its replica while it serves.

The router computes the prefix keys from the request (it knows the HTTP body); here they
are opaque numbers. :class:`PrefixIndex` is state, owned by the model's replica set and
changed only by its synchronous methods; :func:`choose_replica` is a pure function.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: How far above the mean load a preferred replica may go before a request spills over.
BOUNDED_LOAD_EPSILON = 0.25
#: Prefix and session keys remembered per model (oldest forgotten first): ~100 bytes each.
PREFIX_INDEX_ENTRIES = 16_384


@dataclass(frozen=True)
class Affinity:
    """What the router knows of a request for choosing its replica."""

    #: An explicit conversation key (``user``, ``X-Session-Id``); None: none given.
    session: str | None = None
    #: Chained hashes of the prompt's leading blocks, shortest prefix first.
    prefix: tuple[int, ...] = ()


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica as the choice sees it."""

    index: int
    serving: bool  # loaded and taking requests
    startable: bool  # not serving, but a request may wait for it (not failed)
    load: int  # requests leased on it: in flight or waiting


def least_loaded(replicas: Sequence[ReplicaLoad]) -> int:
    """The serving replica with the fewest requests (the lowest index among equals); with none serving,
    the least loaded one that can start, so a request wakes a replica rather than pile on one starting."""
    pool = [r for r in replicas if r.serving] or [r for r in replicas if r.startable] or list(replicas)
    return min(pool, key=lambda r: (r.load, r.index)).index


def within_bound(replicas: Sequence[ReplicaLoad], preferred: int, epsilon: float = BOUNDED_LOAD_EPSILON) -> bool:
    """Whether one more request on ``preferred`` keeps it within ``ceil((1 + epsilon) * mean)`` of the serving set."""
    serving = [r for r in replicas if r.serving]
    total = sum(r.load for r in serving) + 1
    bound = math.ceil((1 + epsilon) * total / max(len(serving), 1))
    return any(r.index == preferred and r.load + 1 <= bound for r in serving)


def choose_replica(
    replicas: Sequence[ReplicaLoad],
    pinned: int | None = None,
    preferred: int | None = None,
    epsilon: float = BOUNDED_LOAD_EPSILON,
) -> int:
    """The replica for one request: ``pinned`` (a session's) while it serves; else ``preferred`` (the one
    holding the request's longest prefix) while within the load bound; else the least loaded."""
    serving = {r.index for r in replicas if r.serving}
    if pinned is not None and pinned in serving:
        return pinned
    if preferred is not None and within_bound(replicas, preferred, epsilon):
        return preferred
    return least_loaded(replicas)


class PrefixIndex:
    """Which replica last served each prefix (and each session), for the newest ``capacity`` keys.

    Each entry remembers the replica's *generation* too: a replica restarted since (a crash,
    an eviction) has lost its cache, so :meth:`lookup` forgets entries of an older generation
    instead of sending a conversation to a replica that no longer holds it.
    """

    def __init__(self, capacity: int = PREFIX_INDEX_ENTRIES) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[int | str, tuple[int, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, keys: Sequence[int | str], generation_of: Callable[[int], int | None]) -> int | None:
        """The replica of the first key still valid (``generation_of(replica)`` unchanged), stale entries dropped."""
        for key in keys:
            entry = self._entries.get(key)
            if entry is None:
                continue
            replica, generation = entry
            if generation_of(replica) == generation:
                self._entries.move_to_end(key)
                return replica
            del self._entries[key]
        return None

    def remember(self, keys: Sequence[int | str], replica: int, generation: int) -> None:
        for key in keys:
            self._entries[key] = (replica, generation)
            self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)


def session_key(session: str) -> str:
    """The index key of a session (a string: it cannot collide with a prefix hash, an int)."""
    return f"session:{session}"
