"""One model id served by several processes: the replica set, owner of which actors serve the id.

Each replica is a whole :class:`~.model.ModelActor` - its own process, port, slots, leases,
crash history and capacity claim - so a replica crashing is restarted by its own actor
while the others serve, and the capacity scheduler counts every replica's memory without
knowing replicas exist. The set owns what concerns them together: the list of its
actors (changed only by :meth:`ReplicaSet.resize`, on a config reload), the prefix index
that routes a conversation back to the replica holding its cache, and bringing every
replica up once the model is wanted. Like a :class:`~.leases.LeaseBook`, its methods are
synchronous where they change state, so each change is whole on the one event loop.
A model with one replica is a set of one: the same code serves both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Sequence

from inference_service.config import ModelConfig
from inference_service.events import REPLICA_SCALED, EventBus
from inference_service.runtimes.base import Endpoint, Runtime
from inference_service.supervisor.capacity import CapacityScheduler
from inference_service.supervisor.errors import SupervisorError
from inference_service.supervisor.leases import Lease
from inference_service.supervisor.model import ModelActor, ModelStatus, ReplicaStatus
from inference_service.supervisor.replicas.routing import (
    Affinity,
    PrefixIndex,
    ReplicaLoad,
    choose_replica,
    least_loaded,
    session_key,
)
from inference_service.supervisor.state import ModelState

logger = logging.getLogger(__name__)

_S = ModelState
#: Where a replica the supervisor stops on purpose is, from the decision on (a crash goes to loading or failed).
_STOPPED = frozenset({_S.UNLOADING, _S.UNLOADED, _S.SHUTDOWN})
#: The order in which a replica's state stands for the whole model's: the best one wins.
_STANDING = (_S.LOADED, _S.LOADING, _S.UNLOADING, _S.UNLOADED, _S.FAILED, _S.SHUTDOWN)

ActorFactory = Callable[[ModelConfig], ModelActor]


class ReplicaSet:
    """The replicas of one model id, and which of them serves each request."""

    def __init__(
        self, config: ModelConfig, new_actor: ActorFactory, capacity: CapacityScheduler, events: EventBus
    ) -> None:
        self.config = config
        self._new_actor = new_actor
        self._capacity = capacity
        self._events = events
        self.actors: list[ModelActor] = [new_actor(config.replica(i)) for i in range(config.replicas)]
        self._index = PrefixIndex()
        self._turns = itertools.count()
        self._warming: dict[ModelActor, asyncio.Task[None]] = {}
        self._scale_up_timer: asyncio.TimerHandle | None = None

    @property
    def steady(self) -> list[ModelActor]:
        """The replicas brought up whenever the model is wanted (``min_replicas``, else all)."""
        return self.actors[: self.config.steady_replicas]

    @property
    def primary(self) -> ModelActor:
        """Replica 0: what every replica shares (the runtime kind, the config) is read from it."""
        return self.actors[0]

    def start(self) -> None:
        for actor in self.actors:
            actor.start()

    # ----------------------------------------------------------------- reading

    @property
    def state(self) -> ModelState:
        return self._standing.state

    @property
    def _standing(self) -> ModelActor:
        """The replica whose state the model shows: a serving one if any, else the one closest to serving."""
        return min(self.actors, key=lambda actor: _STANDING.index(actor.state))

    def status(self) -> ModelStatus:
        """The model as its leading replica shows it (state, process), its requests summed, and its footprint
        the sum of its running replicas' (what it holds of the memory budget; none running: what loading one
        takes). Each replica's own figures are in ``replicas``."""
        statuses = [actor.status() for actor in self.actors]
        standing = statuses[self.actors.index(self._standing)]
        replicas = tuple(ReplicaStatus.of(actor, status) for actor, status in zip(self.actors, statuses, strict=True))
        running = [s for s in statuses if s.process is not None]
        return dataclasses.replace(
            standing,
            footprint_mb=(sum(s.footprint_mb or 0 for s in running) or None) if running else standing.footprint_mb,
            in_flight=sum(s.in_flight for s in statuses),
            waiting=sum(s.waiting for s in statuses),
            restarts=sum(s.restarts for s in statuses),
            loads=sum(s.loads for s in statuses),
            replicas=replicas,
        )

    def endpoint(self) -> Endpoint | None:
        return next(iter(self.endpoints().values()), None)

    def endpoints(self) -> dict[int, Endpoint]:
        """Where each loaded replica serves, by replica index."""
        return {i: a.endpoint for i, a in enumerate(self.actors) if a.state == _S.LOADED and a.endpoint is not None}

    def serves_at(self, endpoint: Endpoint) -> bool:
        """Whether a replica still serves at ``endpoint`` (one that dropped a call may be down)."""
        return endpoint in self.endpoints().values()

    def stopped_at(self, endpoint: Endpoint) -> bool:
        """Whether the replica that served at ``endpoint`` is being (or was) stopped by the supervisor -
        an unload, eviction, idle TTL, swap, reload or shutdown - rather than having died: the stop is
        decided (the state leaves ``loaded``) before the runtime is stopped, so a call the stop cut is
        always seen after it."""
        return any(actor.last_endpoint == endpoint and actor.state in _STOPPED for actor in self.actors)

    def log_lines(self) -> Sequence[str]:
        if len(self.actors) == 1:
            return self.primary.runtime.log_lines()
        return [f"[{actor.name}] {line}" for actor in self.actors for line in actor.runtime.log_lines()]

    # ----------------------------------------------------------------- choosing a replica

    def _loads(self) -> list[ReplicaLoad]:
        return [
            ReplicaLoad(
                index=i,
                serving=actor.state == _S.LOADED and not actor.closed,
                startable=actor.state != _S.FAILED,
                load=actor.leases.leased,
            )
            for i, actor in enumerate(self.actors)
        ]

    def _generation_of(self, index: int) -> int | None:
        """The instance a replica runs now (None: gone); an index entry of another instance is stale."""
        if index >= len(self.actors) or self.actors[index].state != _S.LOADED:
            return None
        return self.actors[index].generation

    def choose(self, affinity: Affinity | None) -> ModelActor:
        """The replica for one request, by the model's ``replica_routing``; remembered for its prefix and session."""
        if len(self.actors) == 1:
            return self.primary
        loads = self._loads()
        routing = self.config.replica_routing
        if routing == "round_robin":
            serving = [r.index for r in loads if r.serving]
            index = serving[next(self._turns) % len(serving)] if serving else least_loaded(loads)
        elif routing == "least_loaded" or affinity is None:
            index = least_loaded(loads)
        else:
            session = [session_key(affinity.session)] if affinity.session else []
            pinned = self._index.lookup(session, self._generation_of) if session else None
            preferred = self._index.lookup(affinity.prefix[::-1], self._generation_of)
            index = choose_replica(loads, pinned=pinned, preferred=preferred)
            actor = self.actors[index]
            if actor.state == _S.LOADED:  # a replica still loading: its generation changes when it serves
                self._index.remember([*session, *affinity.prefix], index, actor.generation)
        return self.actors[index]

    def open_lease(self, priority: int, affinity: Affinity | None) -> Lease:
        """Count a request on its replica from now on; a model that serves and is wanted again is wanted on
        every replica."""
        actor = self.choose(affinity)
        lease = actor.open_lease(priority)
        lease.rebalance = self._rebalance
        if actor.state == _S.LOADED:
            self._warm_up(self.steady, priority)
            self._watch_queue()
        return lease

    def _rebalance(self, lease: Lease) -> None:
        """When a request is let through (its admission slot granted), serve it elsewhere if its replica
        cannot take it now: it is down (crashed, restarting) while another serves, or all its slots are
        busy while another has one free (a replica started since, or one whose requests finished first).
        The choice at arrival holds otherwise: its cache affinity was decided then. A lease whose replica
        left the set (a reload lowered ``replicas``) always moves: to the least loaded replica that stays,
        serving or not."""
        current = lease.actor
        if current not in self.actors:
            self._move(lease, self.actors[least_loaded(self._loads())])
            return
        slots = self.config.concurrency or 1
        serving = [a for a in self.actors if a.state == _S.LOADED and not a.closed]
        if not serving or (current in serving and current.leases.in_flight < slots):
            return
        target = min(serving, key=lambda actor: actor.leases.in_flight)
        if target is current or (current in serving and target.leases.in_flight >= slots):
            return
        self._move(lease, target)

    def _move(self, lease: Lease, target: ModelActor) -> None:
        lease.actor.leases.hand_over(lease, target.leases)
        lease.actor = target
        self._capacity.poke()

    def _saturated(self) -> bool:
        """Whether requests queue: every serving replica has more requests leased than it has slots."""
        slots = self.config.concurrency or 1
        serving = [a for a in self.actors if a.state == _S.LOADED and not a.closed]
        return bool(serving) and all(actor.leases.leased > slots for actor in serving)

    def _queued_elsewhere(self, actor: ModelActor) -> bool:
        """Whether another replica has more requests leased than it has slots: some wait for one."""
        slots = self.config.concurrency or 1
        return any(other.leases.leased > slots for other in self.actors if other is not actor)

    def _watch_queue(self) -> None:
        """Elastic replicas (beyond ``min_replicas``): a queue that still waits ``scale_up_wait_s`` from
        now starts one more replica. Each then stops like any replica, after its idle ``ttl_s``."""
        if len(self.steady) == len(self.actors) or self._scale_up_timer is not None or not self._saturated():
            return
        loop = asyncio.get_running_loop()
        self._scale_up_timer = loop.call_later(self.config.scale_up_wait_s, self._scale_up)

    def _scale_up(self) -> None:
        self._scale_up_timer = None
        if not self._saturated():
            return
        spare = [a for a in self.actors[len(self.steady) :] if a.state == _S.UNLOADED and a not in self._warming]
        self._warm_up(
            spare[:1], priority=2, scaling=f"requests waited {self.config.scale_up_wait_s:g}s on every replica"
        )

    def stop_idle(self, actor: ModelActor, idle_s: float, ttl_s: float) -> None:
        """The TTL reaper found ``actor`` idle past its TTL: stop it (if still idle when its turn comes) - a
        scale-down when it is an elastic replica above ``min_replicas`` (announced once the replica has
        accepted it: a request that came first keeps it up), else the model idling out.

        Not while requests queue on another replica: they move here as soon as their admission slot
        comes (:meth:`_rebalance`), which can be long after this replica came up when the slots were
        all taken by requests admitted before it served - it is about to be busy, not idle."""
        if self._queued_elsewhere(actor):
            return
        detail = f"idle for {idle_s:.0f}s (idle ttl {ttl_s:g}s)"
        scaled_down = None
        if actor in self.actors[len(self.steady) :]:
            scaled_down = functools.partial(self._scaled, actor, "down", "idle", detail)
        else:
            logger.info("model %s %s: unloading", actor.name, detail)
        actor.evict(f"ttl: {detail}", idle_only=True, accepted=scaled_down)

    def _scaled(self, actor: ModelActor, direction: str, reason: str, detail: str) -> None:
        """Tell the logs and ``/v1/events`` that the set starts (``up``) or stops (``down``) a replica, and why."""
        logger.info("model %s: scaling %s: %s %s (%s)", self.config.id, direction, reason, actor.name, detail)
        index = actor.config.replica_index or 0
        self._events.publish(
            REPLICA_SCALED, self.config.id, replica=index, direction=direction, reason=reason, detail=detail
        )

    def _warm_up(self, actors: Sequence[ModelActor], priority: int, scaling: str | None = None) -> None:
        """Bring up, in the background, the replicas that are down - where there is room for them now.

        Only once a replica serves (the request's own replica comes first), and only into free
        capacity: a replica is more throughput, never a reason to evict or swap out another model.
        ``scaling``: why a queue asks for them, published as a scale-up for each one actually started.
        """
        for actor in actors:
            if actor.state == _S.UNLOADED and actor.leases.leased == 0 and actor not in self._warming:
                task = asyncio.create_task(
                    self._bring_up(actor, priority, scaling), name=f"replica:{actor.name}:warm-up"
                )
                self._warming[actor] = task

    async def _bring_up(self, actor: ModelActor, priority: int, scaling: str | None) -> None:
        try:
            if actor.runtime.local:
                await actor.footprint.measure()  # off the event loop: the room it takes is read from the GGUF header
            room = not actor.runtime.local or self._capacity.has_room(actor)
            if actor.state != _S.UNLOADED or not room:
                return
            if scaling is not None:
                self._scaled(actor, "up", "queue", scaling)
            await actor.wait_ready(priority)
        except SupervisorError as error:
            logger.warning("replica %s did not come up: %s", actor.name, error)
        finally:
            self._warming.pop(actor, None)

    # ----------------------------------------------------------------- what is asked of every replica

    async def unload(self) -> None:
        await asyncio.gather(*(actor.unload() for actor in self.actors))

    async def shutdown(self) -> None:
        if self._scale_up_timer is not None:
            self._scale_up_timer.cancel()
        warming = list(self._warming.values())
        for task in warming:
            task.cancel()
        await asyncio.gather(*warming, return_exceptions=True)
        await asyncio.gather(*(actor.shutdown() for actor in self.actors), return_exceptions=True)

    async def reconfigure(self, config: ModelConfig, make_runtime: Callable[[ModelConfig], Runtime] | None) -> None:
        """Each remaining replica takes ``config`` (with ``make_runtime``: restarted on a new runtime, as
        :meth:`ModelActor.reconfigure` does); the count is changed first by :meth:`resize`."""
        self.config = config
        await asyncio.gather(
            *(
                actor.reconfigure(config.replica(i), make_runtime(config.replica(i)) if make_runtime else None)
                for i, actor in enumerate(self.actors)
            )
        )

    def resize(self, config: ModelConfig) -> tuple[list[ModelActor], list[ModelActor]]:
        """Take ``config.replicas`` replicas: new ones are started (not loaded), the last ones leave the set
        at once (no new request goes to them, and the requests queued on them move to the others).
        Returns (added, removed); the caller loads the added ones if the model is up, and drains and
        stops the removed ones. The others are not touched."""
        count = config.replicas
        removed, self.actors = self.actors[count:], self.actors[:count]
        for actor in removed:
            actor.leases.move_out()
        added = [self._new_actor(config.replica(i)) for i in range(len(self.actors), count)]
        for actor in added:
            actor.start()
        self.actors += added
        self.config = config
        for actor, direction in [*((a, "up") for a in added), *((a, "down") for a in removed)]:
            self._scaled(actor, direction, "reload", f"replicas = {count}")
        return added, removed
