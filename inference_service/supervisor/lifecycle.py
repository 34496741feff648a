"""The inside of a model's actor: its state, and the handlers of the messages that change it.

Only the actor's own task runs this code - its :class:`~.mailbox.Mailbox` hands it one
message at a time - so the state needs no lock and no other task sees half a change.
Every transition is a compare-and-swap from the state the handler expected
(:mod:`.state`), and every message carries the generation (one runtime instance) it was
issued for: a verdict about an instance that is gone is recognised and dropped. A
handler decides without awaiting; the slow work is the effects' (:mod:`.effects`),
which report back by message. The outside - what other tasks may do with a model - is
:class:`~.model.ModelActor`. DESIGN.md in this folder tells the whole story.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from inference_service.config import ModelConfig, Settings
from inference_service.events import EVICTION, LOAD_PROGRESS, MODEL_STATE, EventBus
from inference_service.runtimes.base import Endpoint, Runtime
from inference_service.supervisor.capacity import CapacityScheduler
from inference_service.supervisor.effects import RuntimeEffects
from inference_service.supervisor.errors import ModelUnavailable
from inference_service.supervisor.footprint import Footprint
from inference_service.supervisor.leases import LeaseBook
from inference_service.supervisor.mailbox import Mailbox
from inference_service.supervisor.messages import (
    Crashed,
    Evict,
    Granted,
    KeepAlive,
    Message,
    Reconfigure,
    Reopen,
    Shutdown,
    Started,
    Stopped,
    Unload,
    UseSettings,
    Wanted,
    Yield,
    answer,
    answer_after_shutdown,
)
from inference_service.supervisor.restart_policy import Crash, GiveUp, RestartPolicy, decide, keep
from inference_service.supervisor.state import ModelState, StaleTransition, compare_and_swap

logger = logging.getLogger(__name__)

_S = ModelState
_LIVE = frozenset(_S) - {_S.SHUTDOWN}


class ModelLifecycle:
    """One model's state machine: loading, serving, yielding, crashing, unloading, reconfiguring, shutting down."""

    def __init__(
        self, config: ModelConfig, runtime: Runtime, settings: Settings, events: EventBus, capacity: CapacityScheduler
    ) -> None:
        self.config = config
        self.model_id = config.id
        self._settings = settings
        self._events = events
        self._capacity = capacity
        self._effects = RuntimeEffects(config.id, runtime, events, self._send)
        self.leases = LeaseBook()
        self.state = _S.UNLOADED
        self.state_since = time.time()
        self.reason: str | None = None
        self.generation = 0
        self.endpoint: Endpoint | None = None
        #: Where the latest runtime served (kept after it stops): a call it dropped is matched to its stop.
        self.last_endpoint: Endpoint | None = None
        self.closed = False  # yielding its capacity: no new requests until it has been unloaded
        self.loaded_at: float | None = None
        self.serving_since = 0.0  # monotonic: when its current instance began serving
        self.restarts = 0
        self.loads = 0
        self.last_load_s: float | None = None
        self.keep_alive_s: float | None = None  # a request's keep_alive, until the next unload; None: ttl_s
        self._keep_alive_at = 0.0  # when it was set: one set while the model unloads is for its next use
        self._crashes: tuple[Crash, ...] = ()
        self.footprint = Footprint(config, self._current_settings)  # replaced with the config (a restarting reload)
        self._unload_waiters: list[asyncio.Future[None]] = []
        self._successor: tuple[ModelConfig, Runtime] | None = None  # taken over once the runtime has stopped
        self._reconfigured: list[asyncio.Future[None]] = []
        self._awaiting_capacity = False
        self._load_started = 0.0
        self._mailbox: Mailbox[Message] = Mailbox(f"model:{self.model_id}", self._dispatch, answer_after_shutdown)

    @property
    def name(self) -> str:
        """The model's id, and its replica's index when it has several - as the config in force says: a
        reload changing ``replicas`` renames replica 0 (``m`` to ``m#0``), its logs and capacity entry too."""
        return self.config.replica_name

    @property
    def runtime(self) -> Runtime:
        return self._effects.runtime

    @property
    def _serving_endpoint(self) -> Endpoint | None:
        """The endpoint if a request may have it right now: loaded, and not yielding."""
        return self.endpoint if self.state == _S.LOADED and not self.closed else None

    def _current_settings(self) -> Settings:
        return self._settings

    @property
    def _restart_policy(self) -> RestartPolicy:
        return RestartPolicy(max_attempts=self._settings.restart_max_attempts)

    # ----------------------------------------------------------------- the capacity scheduler's view (a Tenant)

    @property
    def in_flight(self) -> int:
        return self.leases.in_flight

    @property
    def waiting(self) -> int:
        return self.leases.waiting

    @property
    def wanted_priority(self) -> int | None:
        return self.leases.wanted_priority

    @property
    def idle_since(self) -> float:
        """When it last did something: its last request or its (re)load, whichever is later.

        Eviction and the TTL reaper both use this, so a model just loaded by ``POST /load``
        counts as fresh for both.
        """
        return max(self.leases.last_used or 0.0, self.loaded_at or 0.0)

    @property
    def footprint_mb(self) -> int:
        """Estimated memory (weights + KV cache + prompt cache), read from the GGUF header once; 0 when unknown."""
        return self.footprint.mb

    @property
    def pinned(self) -> bool:
        """Never evicted for capacity or idle TTL (``pinned = true``): only an explicit unload stops it."""
        return self.config.pinned

    def grant(self) -> None:
        self._send(Granted())

    def evict(self, reason: str, idle_only: bool = False, accepted: Callable[[], None] | None = None) -> None:
        self._send(Evict(reason, idle_only, accepted))

    def yield_slot(self, reason: str) -> None:
        self._send(Yield(reason))

    def reopen(self) -> None:
        self._send(Reopen())

    # ----------------------------------------------------------------- the state machine

    def _send(self, message: Message) -> None:
        self._mailbox.send(message)

    async def _dispatch(self, message: Message) -> None:
        try:
            if isinstance(message, Shutdown):
                await self._shutdown(message)
            else:
                self._handle(message)
        except StaleTransition as stale:
            logger.debug("model %s: dropped stale %s: %s", self.model_id, type(message).__name__, stale)

    def _handle(self, message: Message) -> None:
        match message:
            case Wanted(force=force):
                self._on_wanted(force)
            case Granted():
                self._on_granted()
            case Started():
                self._on_started(message)
            case Crashed(generation=generation, reason=reason):
                self._on_crashed(generation, reason)
            case Unload(done=done):
                self._on_unload(done)
            case Evict():
                self._on_evict(message)
            case KeepAlive(ttl_s=ttl_s):
                self.keep_alive_s, self._keep_alive_at = ttl_s, time.time()
            case Yield(reason=reason):
                if self.state == _S.LOADED and not self.closed:
                    self.closed = True
                    logger.info("model %s yields its capacity: %s", self.model_id, reason)
                    self._capacity.poke()
            case Reopen():
                if self.state == _S.LOADED and self.closed:
                    self.closed = False
                    self._on_wanted(force=False)
            case Stopped(generation=generation):
                self._on_stopped(generation)
            case Reconfigure():
                self._on_reconfigure(message)
            case UseSettings(settings=settings):
                self._settings = settings

    def _transition(
        self, expected: ModelState | frozenset[ModelState], target: ModelState, reason: str | None = None
    ) -> None:
        compare_and_swap(self.state, expected, target)
        logger.info(
            "model %s: %s -> %s%s", self.name, self.state, target, f" ({reason.splitlines()[0]})" if reason else ""
        )
        self.state, self.state_since, self.reason = target, time.time(), reason
        if target == _S.LOADING:
            self.generation += 1
            self.closed = False
        if target != _S.LOADED:
            self.endpoint = None
        tag = self.config.replica_tag
        self._events.publish(
            MODEL_STATE, self.model_id, state=str(target), reason=reason, generation=self.generation, **tag
        )
        self._capacity.poke()

    # -- loading

    def _on_wanted(self, force: bool) -> None:
        if not self.leases.has_waiters:
            return
        if (endpoint := self._serving_endpoint) is not None:
            self.leases.resolve_waiters(endpoint)
        elif self.state == _S.FAILED and force and self.runtime.self_healing:
            self._begin_loading(_S.FAILED)  # an explicit load probes now, replacing the recovery loop
        elif self.state in (_S.UNLOADED, _S.FAILED) and not self._awaiting_capacity:
            if self.runtime.local and self._capacity.limited:
                self._awaiting_capacity = True
                self._events.publish(LOAD_PROGRESS, self.model_id, phase="waiting_for_capacity")
                self._capacity.request(self)
            else:
                self._begin_loading(frozenset({_S.UNLOADED, _S.FAILED}))
        # LOADING, UNLOADING, or LOADED but yielding: the waiter is served when that settles.

    def _on_granted(self) -> None:
        wanted = self._awaiting_capacity and self.leases.has_waiters
        self._awaiting_capacity = False
        if not wanted or self.state not in (_S.UNLOADED, _S.FAILED):
            self._capacity.release(self)  # nobody needs it any more: give the room back
            return
        self._begin_loading(frozenset({_S.UNLOADED, _S.FAILED}))

    def _begin_loading(
        self,
        expected: ModelState | frozenset[ModelState],
        attempts: int = 1,
        delay_s: float = 0.0,
        reason: str | None = None,
    ) -> None:
        self._transition(expected, _S.LOADING, reason)
        self._load_started = time.monotonic()
        self._effects.start(self.generation, self._restart_policy, attempts, delay_s)
        self._events.publish(LOAD_PROGRESS, self.model_id, phase="starting", generation=self.generation)

    def _on_started(self, message: Started) -> None:
        if message.generation != self.generation:
            return  # an attempt that was called off
        if message.endpoint is None:
            self._fail(_S.LOADING, message.error or "start failed")
            return
        recovered = self.state == _S.FAILED
        self._transition(_S.LOADING if not recovered else _S.FAILED, _S.LOADED)
        if recovered:
            self.generation += 1  # a new instance of the backend: its own watcher, its own generation
        self.endpoint = self.last_endpoint = message.endpoint
        self.loaded_at = time.time()
        self.serving_since = time.monotonic()
        if not recovered:
            self.loads += 1
            self.last_load_s = self.serving_since - self._load_started
            self._events.publish(LOAD_PROGRESS, self.model_id, phase="loaded", load_s=self.last_load_s)
        self._effects.watch(self.generation)
        self.leases.resolve_waiters(self.endpoint)

    def _fail(self, expected: ModelState | frozenset[ModelState], reason: str) -> None:
        self._transition(expected, _S.FAILED, reason)
        self._capacity.release(self)
        self.leases.reject_waiters(ModelUnavailable(f"model {self.model_id!r} failed to load: {reason}"))
        if self.runtime.self_healing:
            self._effects.recover(self.generation, self._settings.runtimes.remote.health_interval_s)

    # -- crashes

    def _on_crashed(self, generation: int, reason: str) -> None:
        if generation != self.generation or self.state != _S.LOADED:
            return  # that instance is already gone by our own hand
        if self.runtime.self_healing:
            self._fail(_S.LOADED, reason)
            return
        if self.closed:
            # It was yielding its room to a model that waited long enough: restarted, it would only be
            # evicted again. The room goes to that model now; its own queue waits for its turn again.
            self._begin_unloading(_S.LOADED, drain=False, reason=f"{reason}\n(not restarted: it was yielding)")
            return
        policy = self._restart_policy
        self._crashes = keep(policy, (*self._crashes, Crash(self.serving_since, time.monotonic())))
        verdict = decide(policy, self._crashes)
        if isinstance(verdict, GiveUp):
            self._fail(_S.LOADED, f"{verdict.why}: {reason}")
            return
        self.restarts += 1
        self._begin_loading(_S.LOADED, attempts=verdict.attempts, delay_s=verdict.after_s, reason=reason)

    # -- unloading

    def _on_unload(self, done: asyncio.Future[None]) -> None:
        if self._awaiting_capacity:
            self._awaiting_capacity = False
            self._capacity.withdraw(self)
            error = ModelUnavailable(f"model {self.model_id!r} was unloaded while it waited for capacity")
            self.leases.reject_waiters(error)
        if self.state == _S.UNLOADED:
            done.set_result(None)
            return
        self._unload_waiters.append(done)
        if self.state == _S.UNLOADING:
            return
        if self.state == _S.LOADING:
            error = ModelUnavailable(f"model {self.model_id!r} was unloaded while it was loading")
            self.leases.reject_waiters(error)
        self._begin_unloading(frozenset({_S.LOADING, _S.LOADED, _S.FAILED}), drain=self.state == _S.LOADED)

    def _on_evict(self, message: Evict) -> None:
        reason = message.reason
        if self.state != _S.LOADED or self.leases.in_flight or (message.idle_only and self.leases.leased):
            logger.debug(
                "model %s: eviction (%s) refused: %s, %d leased", self.model_id, reason, self.state, self.leases.leased
            )
            self._capacity.evict_refused(self)
            return
        kind = "swap" if self.closed else reason.split(":", 1)[0]  # swap: it yielded to a model that waited too long
        self._events.publish(EVICTION, self.model_id, reason=kind, detail=reason)
        if message.accepted is not None:
            message.accepted()
        self._begin_unloading(_S.LOADED, drain=False)

    def _on_reconfigure(self, message: Reconfigure) -> None:
        if message.runtime is None:  # routing or idle settings only: the process is untouched
            self.config = message.config
            message.done.set_result(None)
            return
        self._successor = (message.config, message.runtime)  # a newer one replaces one not yet taken over
        self._reconfigured.append(message.done)
        if self.state == _S.UNLOADED:
            self._take_over_successor()
        elif self.state != _S.UNLOADING:  # when it has stopped, the successor takes over (_on_stopped)
            self._begin_unloading(frozenset({_S.LOADING, _S.LOADED, _S.FAILED}), drain=self.state == _S.LOADED)

    def _begin_unloading(
        self, expected: ModelState | frozenset[ModelState], drain: bool, reason: str | None = None
    ) -> None:
        self._transition(expected, _S.UNLOADING, reason)
        self._effects.stop(self.generation, self.leases, self._settings.drain_timeout_s if drain else None)

    def _on_stopped(self, generation: int) -> None:
        if generation != self.generation:
            return
        unloading_since = self.state_since
        self._transition(_S.UNLOADING, _S.UNLOADED)
        if self._keep_alive_at <= unloading_since:  # set before the unload began: for the use that ends here
            self.keep_alive_s = None
        self._capacity.release(self)
        if self._successor is not None:
            self._take_over_successor()
        answer(self._unload_waiters)
        self._on_wanted(force=False)  # requests that waited out the unload (a yielded or reconfigured model's queue)

    def _take_over_successor(self) -> None:
        """The new config and runtime replace the stopped ones; the crash history was the old runtime's."""
        assert self._successor is not None and self.state == _S.UNLOADED
        (self.config, runtime), self._successor = self._successor, None
        self._effects.replace_runtime(runtime)
        self.footprint = Footprint(self.config, self._current_settings)
        self._crashes = ()
        answer(self._reconfigured)

    # -- the end

    async def _shutdown(self, message: Shutdown) -> None:
        """Final: stop everything this model runs, whatever it was doing, and refuse all that waits.

        Every operation is awaited, not only the newest: one called off earlier may still be
        stopping the runtime, and the final stop must not run beside it.
        """
        await self._effects.halt()
        self._transition(_LIVE, _S.SHUTDOWN)
        self.leases.reject_waiters(
            ModelUnavailable(f"model {self.model_id!r} is unavailable: the service is shutting down")
        )
        answer([*self._unload_waiters, *self._reconfigured, message.done])
        self._mailbox.close()
