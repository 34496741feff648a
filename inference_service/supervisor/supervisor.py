"""The supervisor: the facade the router talks to.

It owns no model state itself: each model belongs to its :class:`ModelActor`, room in
memory to the :class:`CapacityScheduler`. What is left here is the public surface
(load, unload, ensure_ready, lease, status, logs) and the service-wide chores: start-up
(preloads, probing remote backends), the TTL reaper, and shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from inference_service.config import ModelConfig, Settings
from inference_service.events import EventBus
from inference_service.runtimes.base import Endpoint, Runtime
from inference_service.supervisor.capacity import CapacityScheduler
from inference_service.supervisor.errors import ModelUnavailable, SupervisorError, UnknownModel
from inference_service.supervisor.leases import Lease
from inference_service.supervisor.model import ModelActor, ModelStatus
from inference_service.supervisor.replicas.replica_set import ReplicaSet
from inference_service.supervisor.replicas.routing import Affinity
from inference_service.supervisor.signals import being_cancelled, cancelled_by_stop_signals
from inference_service.supervisor.state import ModelState

logger = logging.getLogger(__name__)

RuntimeFactory = Callable[[ModelConfig], Runtime]

_REAPER_INTERVAL_S = 1.0


class Supervisor:
    """Loads, watches, restarts and unloads models through their actors."""

    def __init__(self, settings: Settings, runtime_factory: RuntimeFactory, events: EventBus | None = None) -> None:
        self._settings = settings
        self._runtime_factory = runtime_factory
        self.events = events or EventBus()
        self.capacity = CapacityScheduler(settings)
        self._models = {
            model_id: ReplicaSet(cfg, self._actor_for, self.capacity, self.events)
            for model_id, cfg in settings.models.items()
        }
        #: Actors a reload took out (a removed model, replicas it dropped), each drained and stopped by its own
        #: task: tracked from the instant they leave, so close() stops and awaits them whatever the reload did.
        self._retiring: dict[ModelActor, asyncio.Task[None]] = {}
        self._reaper: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the actors and the idle reaper, load every ``preload`` model and probe every remote one.

        Failures are recorded as the model's state (``failed`` with the reason), not raised.
        """
        for replicas in self._models.values():
            replicas.start()
        self._reaper = asyncio.create_task(self._reap_idle(), name="supervisor:ttl")
        preloading = asyncio.create_task(self._preload(), name="supervisor:preload")
        # The server only acts on SIGTERM/SIGINT once start-up is over, and a preload can take up to
        # health_timeout_s: stop waiting at once instead, so shutdown (close) follows promptly.
        with cancelled_by_stop_signals(preloading):
            try:
                await preloading
            except asyncio.CancelledError:
                if being_cancelled():
                    raise
                logger.warning("stop signal during preload: not waiting for the models still loading")

    async def _preload(self) -> None:
        # A remote backend costs nothing to "load" (one health probe): do it now, so its state is
        # known from the start instead of `unloaded` until its first request.
        chosen = [m for m, r in self._models.items() if r.config.preload or r.config.runtime == "remote"]
        results = await asyncio.gather(*(self.load(model_id) for model_id in chosen), return_exceptions=True)
        for model_id, result in zip(chosen, results, strict=True):
            if isinstance(result, BaseException):
                logger.error("start-up load of %s failed: %s", model_id, result)

    async def close(self) -> None:
        """Stop everything we started. Called on shutdown; leaves no child behind."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        models, retiring = list(self._models.values()), dict(self._retiring)
        await asyncio.gather(
            *(replicas.shutdown() for replicas in models),
            *(actor.shutdown() for actor in retiring),
            *retiring.values(),
            return_exceptions=True,
        )
        logger.info("supervisor stopped all runtimes")

    # ----------------------------------------------------------------- public API

    @property
    def model_ids(self) -> list[str]:
        return list(self._models)

    def status(self, model_id: str) -> ModelStatus:
        return self._get(model_id).status()

    def endpoint(self, model_id: str) -> Endpoint | None:
        """Where a loaded model (one replica of it) serves, with the headers it wants (a child's own API key), else None."""
        return self._get(model_id).endpoint()

    def endpoints(self, model_id: str) -> dict[int, Endpoint]:
        """Where each loaded replica of a model serves, by replica index (one entry for a model of one process)."""
        return self._get(model_id).endpoints()

    def serves_at(self, model_id: str, endpoint: Endpoint) -> bool:
        """Whether one of the model's replicas is loaded at ``endpoint`` (the router's retry waits until not)."""
        return self._get(model_id).serves_at(endpoint)

    def stopped_at(self, model_id: str, endpoint: Endpoint) -> bool:
        """Whether the runtime of ``model_id`` at ``endpoint`` was stopped on purpose, not crashed
        (the router sends again only what a crash cut: a retry would bring back what a stop took away)."""
        return self._get(model_id).stopped_at(endpoint)

    def logs(self, model_id: str) -> Sequence[str]:
        return self._get(model_id).log_lines()

    async def load(self, model_id: str, priority: int = 2) -> Endpoint:
        """Bring a model - every steady replica of it (see ``min_replicas``) - to ``loaded`` (always trying again if it failed) and return
        the first replica's endpoint.

        Waits for capacity like a request does, for at most the model's ``queue_timeout_s``.
        """
        replicas = self._get(model_id)
        timeout_s = replicas.config.queue_timeout_s or self._settings.queue_timeout_s
        loads = asyncio.gather(*(actor.wait_ready(priority, force=True) for actor in replicas.steady))
        try:
            return (await asyncio.wait_for(loads, timeout_s))[0]
        except TimeoutError:
            raise ModelUnavailable(f"model {model_id!r} did not get capacity to load within {timeout_s:g}s") from None

    async def ensure_ready(self, model_id: str, priority: int = 2) -> Endpoint:
        """The endpoint of a serving model, loading it on demand; a failed model answers with its reason."""
        return await self._get(model_id).choose(None).wait_ready(priority)

    @contextlib.asynccontextmanager
    async def lease(self, model_id: str, priority: int = 2, affinity: Affinity | None = None) -> AsyncIterator[Lease]:
        """Claim a model for one request: counted from now (it protects the model from eviction and
        tells the scheduler a request is queued for it); ``await lease.ready()`` for the endpoint.

        A model with replicas gives the lease to one of them, chosen by ``affinity`` (the
        request's prefix and session, see :mod:`.routing`)."""
        lease = self._get(model_id).open_lease(priority, affinity)
        try:
            yield lease
        finally:
            lease.actor.close_lease(lease)

    async def prepare(self, model_ids: Sequence[str]) -> None:
        """Load the models one job needs (an orchestration) together, before it starts - if they fit together.

        When they cannot all be resident at once, nothing is done here: the job's stages
        then take their turns, each waiting for its model. Failures are left for the
        stages to report.
        """
        actors = [self._get(model_id).primary for model_id in dict.fromkeys(model_ids)]
        local = [a for a in actors if a.runtime.local]
        await asyncio.gather(*(a.footprint.measure() for a in local))  # off the event loop
        if not self.capacity.fit_together(local):
            return
        loads = asyncio.gather(
            *(a.wait_ready() for a in actors if a.state != ModelState.LOADED), return_exceptions=True
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(loads, self._settings.queue_timeout_s)

    def keep_alive(self, model_id: str, ttl_s: float | None) -> None:
        """How long the model stays loaded once idle, until it is next unloaded (Ollama's
        ``keep_alive``): seconds, 0 to unload it as soon as it is idle, ``inf`` for ever; None
        gives the decision back to its ``ttl_s``."""
        for actor in self._get(model_id).actors:
            actor.keep_alive(ttl_s)

    async def unload(self, model_id: str) -> None:
        """Unload a model, letting in-flight requests finish first (up to ``drain_timeout_s``)."""
        await self._get(model_id).unload()

    # ----------------------------------------------------------------- config reload

    def update_settings(self, settings: Settings) -> None:
        """Top-level limits (capacity, drain, restarts, retry) apply from the next decision on.

        Per-model configs are not taken from ``settings``: models change only through
        :meth:`add_model`, :meth:`remove_model` and :meth:`replace_model`.
        """
        self._settings = settings
        self.capacity.configure(settings)
        for actor in self._actors():
            actor.use_settings(settings)
        self.capacity.poke()  # a raised limit may let a waiting model in

    def add_model(self, config: ModelConfig) -> None:
        """Start managing a new model, ``unloaded`` (the caller loads it if it wants it preloaded)."""
        if config.id in self._models:
            raise SupervisorError(f"model {config.id!r} already exists")
        replicas = self._models[config.id] = ReplicaSet(config, self._actor_for, self.capacity, self.events)
        replicas.start()

    async def remove_model(self, model_id: str) -> None:
        """Stop managing a model: unknown to new requests at once; in-flight ones drain, then it stops.

        Until it has stopped it is *retiring*: should this call be cancelled (a reload called
        off), :meth:`close` still shuts it down - nothing the supervisor started outlives it.
        """
        await asyncio.shield(asyncio.gather(*self._retire(self._models.pop(model_id).actors)))

    def _retire(self, actors: Sequence[ModelActor]) -> list[asyncio.Task[None]]:
        """Drain and stop ``actors``, already out of the map (a removed model, or replicas a reload dropped).

        Synchronous, so they are in :attr:`_retiring` before the caller next awaits: each is retired
        by a task of its own, which neither the caller's failure nor its cancellation stops.
        """
        for actor in actors:
            self._retiring[actor] = asyncio.create_task(
                self._drain_and_stop(actor), name=f"supervisor:retire:{actor.name}"
            )
        return [self._retiring[actor] for actor in actors]

    async def _drain_and_stop(self, actor: ModelActor) -> None:
        try:
            await actor.unload()
            await actor.shutdown()
        finally:
            del self._retiring[actor]

    async def replace_model(self, config: ModelConfig, restart: bool) -> None:
        """Give a model a new config.

        ``restart=False`` (only routing or idle settings changed): applied in place, the
        process untouched. ``restart=True`` (launch settings changed): the model drains its
        in-flight requests, stops, and takes a runtime made from the new config; requests
        queued before, or arriving meanwhile, wait for it as they would around an unload
        and are served by the new process. If the model was up, it is loaded again. No
        request is refused. The actor does the whole change itself: a caller cancelled
        meanwhile leaves no half-done state behind.

        A changed ``replicas`` adds replicas (loaded if the model is up) or takes the last ones
        out at once: their queued requests move to the replicas that stay, and they drain and
        stop in the background, *retiring* (this call does not wait for them, so a reload's
        other changes do not either; :meth:`close` stops them if they are still at it). The
        other replicas are not touched.
        """
        replicas = self._get(config.id)
        was_up = replicas.state in (ModelState.LOADING, ModelState.LOADED)
        added, removed = replicas.resize(config)
        self._retire(removed)
        await replicas.reconfigure(config, self._runtime_factory if restart else None)
        if not restart:
            self.capacity.poke()  # a model no longer pinned may be evicted for one waiting
        if was_up and (added or restart):
            await self.load(config.id)

    # ----------------------------------------------------------------- internals

    def _actor_for(self, config: ModelConfig) -> ModelActor:
        """The actor of one replica (``config`` is that replica's), not started yet."""
        return ModelActor(config, self._runtime_factory(config), self._settings, self.events, self.capacity)

    def _actors(self) -> list[ModelActor]:
        return [actor for replicas in self._models.values() for actor in replicas.actors]

    def _get(self, model_id: str) -> ReplicaSet:
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModel(model_id, list(self._models)) from None

    async def _reap_idle(self) -> None:
        """Unload models idle (no request leased, not even a waiting one) for longer than their
        idle TTL: a request's keep_alive, else their ``ttl_s``."""
        while True:
            await asyncio.sleep(_REAPER_INTERVAL_S)
            now = time.time()
            for replicas in list(self._models.values()):
                for actor in replicas.actors:
                    ttl = actor.idle_ttl_s
                    if ttl is None or actor.state != ModelState.LOADED or actor.in_flight or actor.waiting:
                        continue
                    if (idle_s := now - actor.idle_since) >= ttl:
                        replicas.stop_idle(actor, idle_s, ttl)
