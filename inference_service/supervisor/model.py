"""A model's actor as the rest of the supervisor sees it: what may be read, leased, awaited and asked of it.

Any task may call these methods - a request's, the capacity scheduler's, the
supervisor's. None of them changes the model's state: they read it, count a request in
the model's :class:`~.leases.LeaseBook` (synchronous, so each change is whole), or send
the actor a message that its own task handles (:mod:`.lifecycle`). DESIGN.md in this
folder tells the whole story.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from inference_service.config import ModelConfig, Settings
from inference_service.runtimes.base import Endpoint, ProcessInfo, Runtime
from inference_service.supervisor.errors import InsufficientCapacity, ModelUnavailable
from inference_service.supervisor.leases import Lease, LeaseMoved
from inference_service.supervisor.lifecycle import ModelLifecycle
from inference_service.supervisor.messages import (
    KeepAlive,
    Message,
    Reconfigure,
    Shutdown,
    Unload,
    UseSettings,
    Wanted,
)
from inference_service.supervisor.state import ModelState

_S = ModelState


@dataclass(frozen=True)
class ModelStatus:
    """A snapshot of one model for callers (the API, metrics): taken at once, it stays as it was."""

    id: str
    runtime: str
    state: ModelState
    reason: str | None
    aliases: list[str]
    roles: list[str]
    process: ProcessInfo | None
    in_flight: int
    waiting: int
    restarts: int
    loads: int
    generation: int
    footprint_mb: int | None
    loaded_at: float | None
    last_used: float | None
    state_since: float
    last_load_s: float | None
    #: Idle seconds before the TTL reaper unloads it (a request's keep_alive, else ttl_s); None: never.
    idle_ttl_s: float | None = None
    #: Each process serving the model (one unless it has ``replicas``); the fields above sum or lead them.
    replicas: tuple[ReplicaStatus, ...] = ()

    @property
    def rss_mb(self) -> float | None:
        """Resident memory of every process serving the model, summed over its replicas; None: none is known."""
        if not self.replicas:
            return self.process.rss_mb if self.process else None
        measured = [replica.rss_mb for replica in self.replicas if replica.rss_mb is not None]
        return sum(measured) if measured else None


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica of a model: its process, its GPUs, its requests."""

    index: int
    state: ModelState
    pid: int | None
    port: int | None
    devices: list[int] | None
    in_flight: int
    waiting: int
    restarts: int
    generation: int
    rss_mb: float | None
    cpu_percent: float | None
    #: This process's memory estimate (what the capacity scheduler counts for it).
    footprint_mb: int | None

    @staticmethod
    def of(actor: ModelActor, status: ModelStatus) -> ReplicaStatus:
        process = status.process
        return ReplicaStatus(
            index=actor.config.replica_index or 0,
            state=status.state,
            pid=process.pid if process else None,
            port=process.port if process else None,
            rss_mb=process.rss_mb if process else None,
            cpu_percent=process.cpu_percent if process else None,
            footprint_mb=status.footprint_mb,
            devices=actor.config.devices,
            in_flight=status.in_flight,
            waiting=status.waiting,
            restarts=status.restarts,
            generation=status.generation,
        )


class ModelActor(ModelLifecycle):
    """The owner of one model. Public methods only read, count or send messages; its task does the rest."""

    def status(self) -> ModelStatus:
        return ModelStatus(
            id=self.model_id,
            runtime=self.config.runtime,
            state=self.state,
            reason=self.reason,
            aliases=list(self.config.aliases),
            roles=list(self.config.roles),
            process=self.runtime.process_info(),
            in_flight=self.leases.in_flight,
            waiting=self.leases.waiting,
            restarts=self.restarts,
            loads=self.loads,
            generation=self.generation,
            footprint_mb=self.footprint.known_mb or None,
            loaded_at=self.loaded_at,
            last_used=self.leases.last_used,
            state_since=self.state_since,
            last_load_s=self.last_load_s,
            idle_ttl_s=self.idle_ttl_s,
        )

    @property
    def idle_ttl_s(self) -> float | None:
        """How long the model may stay idle before the TTL reaper unloads it; None: for ever.

        A pinned model: never. Otherwise a request's keep_alive (0: unload once idle, ``inf``:
        never) holds until the model is next unloaded, else the configured ``ttl_s`` decides
        (unset or 0: never) - except for a replica of the ``min_replicas`` floor, which stays up.
        """
        if self.pinned:
            return None
        if self.keep_alive_s is not None:
            return None if math.isinf(self.keep_alive_s) else self.keep_alive_s
        if self.config.kept_up:
            return None
        return self.config.ttl_s or None

    def use_settings(self, settings: Settings) -> None:
        """Top-level limits from a config reload: the actor takes them in turn, and they decide from then on."""
        self._send(UseSettings(settings))

    # ----------------------------------------------------------------- messages in

    def start(self) -> None:
        self._mailbox.start()

    def keep_alive(self, ttl_s: float | None) -> None:
        """Keep the model loaded for ``ttl_s`` idle seconds from now on (see :attr:`idle_ttl_s`)."""
        self._send(KeepAlive(ttl_s))

    async def wait_ready(self, priority: int = 2, force: bool = False, lease: Lease | None = None) -> Endpoint:
        """Wait until the model serves and return its endpoint (a lease becomes in flight at that moment).

        A failed model answers at once with its reason instead of making every request pay
        for a doomed start: an external backend until its probe succeeds, a local one for
        ``failed_retry_s``. ``force`` (an explicit load) always tries again.
        """
        if self.runtime.local:
            await self.footprint.measure()  # once, before the capacity decisions that read it
        if lease is not None and self.leases.moved_out:
            raise LeaseMoved()  # a replica a reload took out serves no new request: the lease moves
        if self.state == _S.SHUTDOWN:
            raise ModelUnavailable(f"model {self.model_id!r} is unavailable: the service is shutting down")
        if (endpoint := self._serving_endpoint) is not None:
            return self.leases.serve(lease, endpoint)
        if self.state == _S.FAILED and not force:
            cooling = time.time() - self.state_since < self._settings.failed_retry_s
            if self.runtime.self_healing or cooling:
                raise ModelUnavailable(f"model {self.model_id!r} is unavailable: {self.reason}")
        if self._capacity.limited and self.runtime.local and (never := self._capacity.never_fits(self)):
            raise InsufficientCapacity(never)
        waiter = self.leases.wait(priority, lease)
        self._send(Wanted(force))
        try:
            return await waiter.future
        finally:
            self.leases.forget(waiter)
            self._capacity.poke()

    def serve_if_loaded(self, lease: Lease) -> None:
        if (endpoint := self._serving_endpoint) is not None:
            self.leases.serve(lease, endpoint)

    def open_lease(self, priority: int) -> Lease:
        """Count a request from now on, before the model is ready: it protects the model from eviction."""
        return self.leases.open(self, priority)

    def close_lease(self, lease: Lease) -> None:
        if self.leases.close(lease):
            self._capacity.poke()

    async def unload(self) -> None:
        await self._ask(Unload)

    async def reconfigure(self, config: ModelConfig, runtime: Runtime | None) -> None:
        """Take ``config`` (with ``runtime``: drain, stop, and continue on the new runtime); see :class:`Reconfigure`."""
        await self._ask(lambda done: Reconfigure(config, runtime, done))

    async def shutdown(self) -> None:
        await self._ask(Shutdown)

    async def _ask(self, message: Callable[[asyncio.Future[None]], Message]) -> None:
        """Send a request and wait for its answer; a caller that gives up does not call the request off."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send(message(done))
        await asyncio.shield(done)
