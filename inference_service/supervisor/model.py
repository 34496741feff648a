"""One model, one owner: the actor that holds a model's state, runtime and generation.

Every change of state is made by the actor's task while it handles a message from its
inbox, one message at a time, and every transition is a compare-and-swap from the state
the writer expected. Messages carry the generation they were issued for: a generation
is one runtime instance (it grows each time the model starts anew), so the verdict of a
watcher or a start attempt that belonged to an earlier instance is recognised and
dropped instead of overwriting the present.

Long work - starting, draining and stopping the runtime, restart backoff, probing a
backend that went away - runs as the actor's single *operation* task, and the
runtime's liveness as its single *watcher* task; both end by sending a message back,
and starting a new one always cancels the old. So there is never a second loop
probing the same model, and nothing outside the actor writes its state.

Requests are counted the moment they are leased, before the model is ready: ``waiting``
leases keep a model from being evicted as idle (the capacity scheduler decides when a
queue has waited long enough), ``in_flight`` ones are being served and are drained
before any unload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from inference_service.config import ModelConfig, Settings
from inference_service.events import EVICTION, LOAD_PROGRESS, MODEL_STATE, EventBus
from inference_service.runtimes.base import Endpoint, ProcessInfo, Runtime, RuntimeStartError
from inference_service.supervisor.capacity import CapacityScheduler
from inference_service.supervisor.errors import InsufficientCapacity, ModelUnavailable
from inference_service.supervisor.footprint import estimate_mb, measure_mb
from inference_service.supervisor.messages import (
    Crashed,
    Evict,
    Granted,
    KeepAlive,
    Message,
    Reopen,
    Shutdown,
    Started,
    Stopped,
    Unload,
    Wanted,
    Yield,
)
from inference_service.supervisor.state import ModelState, StaleTransition, compare_and_swap

logger = logging.getLogger(__name__)

#: Restart backoff (seconds): base * 2**(n-1), capped - between failed starts, and between crashes in a row.
BACKOFF_BASE_S, BACKOFF_MAX_S = 0.25, 10.0
#: A child that served this long before crashing starts a new crash streak (it was not crash-looping).
STABLE_UPTIME_S = 60.0

_S = ModelState


@dataclass(frozen=True)
class ModelStatus:
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


@dataclass(eq=False)
class _Waiter:
    """A caller waiting for ``loaded``: a lease (which becomes in-flight when served) or a plain load."""

    future: asyncio.Future[Endpoint]
    priority: int
    lease: Lease | None = None


@dataclass(eq=False)
class Lease:
    """One request's claim on a model, from before it is ready until its response is done."""

    actor: ModelActor
    priority: int
    endpoint: Endpoint | None = None
    closed: bool = field(default=False)

    def ready_now(self) -> Endpoint | None:
        """The endpoint at once if the model is serving (the common case: no waiting, no task), else None."""
        if self.endpoint is None:
            self.actor.serve_if_loaded(self)
        return self.endpoint

    async def ready(self) -> Endpoint:
        """The model's endpoint, loading it (or waiting for capacity) if needed; counts as in flight from then."""
        if self.endpoint is None:
            self.endpoint = await self.actor.wait_ready(self.priority, lease=self)
        return self.endpoint


class ModelActor:
    """The owner of one model. Public methods only send messages or read; the task does the rest."""

    def __init__(
        self, config: ModelConfig, runtime: Runtime, settings: Settings, events: EventBus, capacity: CapacityScheduler
    ) -> None:
        self.config = config
        self.model_id = config.id
        self.runtime = runtime
        self._settings = settings
        self._events = events
        self._capacity = capacity
        self.state = _S.UNLOADED
        self.state_since = time.time()
        self.reason: str | None = None
        self.generation = 0
        self.endpoint: Endpoint | None = None
        self.closed = False  # yielding its capacity: no new requests until it has been unloaded
        self.loaded_at: float | None = None
        self.serving_since = 0.0  # monotonic: when its current turn at serving began (its last load)
        self.last_used: float | None = None
        self.restarts = 0
        self.crash_streak = 0  # consecutive crashes, each within STABLE_UPTIME_S of (re)loading
        self.loads = 0
        self.last_load_s: float | None = None
        self.keep_alive_s: float | None = None  # a request's keep_alive, until the next unload; None: ttl_s
        self._keep_alive_at = 0.0  # when it was set: one set while the model unloads is for its next use
        self._footprint_mb: int | None = None
        self.in_flight = 0
        self._leases = 0
        self._none_in_flight = asyncio.Event()
        self._none_in_flight.set()
        self._waiters: list[_Waiter] = []
        self._unload_waiters: list[asyncio.Future[None]] = []
        self._awaiting_capacity = False
        self._load_started = 0.0
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()  # unbounded: each sender posts at most one per action
        self._task: asyncio.Task[None] | None = None
        self._operation: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- reading

    @property
    def waiting(self) -> int:
        """Leased requests not yet being served."""
        return self._leases - self.in_flight

    @property
    def wanted_priority(self) -> int | None:
        return max((w.priority for w in self._waiters if not w.future.done()), default=None)

    @property
    def idle_since(self) -> float:
        """When it last did something: its last request or its (re)load, whichever is later.

        Eviction and the TTL reaper both use this, so a model just loaded by ``POST /load``
        counts as fresh for both.
        """
        return max(self.last_used or 0.0, self.loaded_at or 0.0)

    @property
    def idle_ttl_s(self) -> float | None:
        """How long the model may stay idle before the TTL reaper unloads it; None: for ever.

        A request's keep_alive (0: unload once idle, ``inf``: never) holds until the model is
        next unloaded; otherwise the configured ``ttl_s`` decides (unset or 0: never).
        """
        if self.keep_alive_s is not None:
            return None if math.isinf(self.keep_alive_s) else self.keep_alive_s
        return self.config.ttl_s or None

    @property
    def footprint_mb(self) -> int:
        """Estimated memory (weights + KV cache), read from the GGUF header once; 0 when unknown.

        :meth:`measure_footprint` reads it in a thread before any capacity decision; reading it
        here, on the event loop, is the fallback for a reader that came first.
        """
        if self._footprint_mb is None:
            self._footprint_mb = estimate_mb(self._model_file, self.config.ctx_size)
        return self._footprint_mb

    async def measure_footprint(self) -> None:
        """Read the GGUF header off the event loop: a large vocabulary stalled every request up to a second."""
        if self._footprint_mb is None:
            self._footprint_mb = await measure_mb(self._model_file, self.config.ctx_size)

    @property
    def _model_file(self) -> Path | None:
        return self._settings.model_path(self.config) if self.config.path is not None else None

    def status(self) -> ModelStatus:
        return ModelStatus(
            id=self.model_id,
            runtime=self.config.runtime,
            state=self.state,
            reason=self.reason,
            aliases=list(self.config.aliases),
            roles=list(self.config.roles),
            process=self.runtime.process_info(),
            in_flight=self.in_flight,
            waiting=self.waiting,
            restarts=self.restarts,
            loads=self.loads,
            generation=self.generation,
            footprint_mb=self._footprint_mb or None,
            loaded_at=self.loaded_at,
            last_used=self.last_used,
            state_since=self.state_since,
            last_load_s=self.last_load_s,
            idle_ttl_s=self.idle_ttl_s,
        )

    def use_settings(self, settings: Settings) -> None:
        """Top-level limits from a config reload; read at each decision, so they apply from the next."""
        self._settings = settings

    # ----------------------------------------------------------------- messages in

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"model:{self.model_id}")

    def _send(self, message: Message) -> None:
        self.start()
        self._inbox.put_nowait(message)

    def grant(self) -> None:
        self._send(Granted())

    def evict(self, reason: str, idle_only: bool = False) -> None:
        self._send(Evict(reason, idle_only))

    def keep_alive(self, ttl_s: float | None) -> None:
        """Keep the model loaded for ``ttl_s`` idle seconds from now on (see :attr:`idle_ttl_s`)."""
        self._send(KeepAlive(ttl_s))

    def yield_slot(self, reason: str) -> None:
        self._send(Yield(reason))

    def reopen(self) -> None:
        self._send(Reopen())

    async def wait_ready(self, priority: int = 2, force: bool = False, lease: Lease | None = None) -> Endpoint:
        """Wait until the model serves and return its endpoint (a lease becomes in flight at that moment).

        A failed model answers at once with its reason instead of making every request pay
        for a doomed start: an external backend until its probe succeeds, a local one for
        ``failed_retry_s``. ``force`` (an explicit load) always tries again.
        """
        if self.runtime.local:
            await self.measure_footprint()  # once, before the capacity decisions that read it
        if self.state == _S.SHUTDOWN:
            raise ModelUnavailable(f"model {self.model_id!r} is unavailable: the service is shutting down")
        if self.state == _S.LOADED and not self.closed and self.endpoint is not None:
            return self._serve(lease, self.endpoint)
        if self.state == _S.FAILED and not force:
            cooling = time.time() - self.state_since < self._settings.failed_retry_s
            if self.runtime.self_healing or cooling:
                raise ModelUnavailable(f"model {self.model_id!r} is unavailable: {self.reason}")
        if self._capacity.limited and self.runtime.local and (never := self._capacity.never_fits(self)):
            raise InsufficientCapacity(never)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), priority, lease)
        self._waiters.append(waiter)
        self._send(Wanted(force))
        try:
            return await waiter.future
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._capacity.poke()

    def serve_if_loaded(self, lease: Lease) -> None:
        if self.state == _S.LOADED and not self.closed and self.endpoint is not None:
            self._serve(lease, self.endpoint)

    def open_lease(self, priority: int) -> Lease:
        """Count a request from now on, before the model is ready: it protects the model from eviction."""
        self._leases += 1
        return Lease(self, priority)

    def close_lease(self, lease: Lease) -> None:
        if lease.closed:
            return
        lease.closed = True
        self._leases -= 1
        if lease.endpoint is not None:
            self.in_flight -= 1
            self.last_used = time.time()
            if self.in_flight == 0:
                self._none_in_flight.set()
        self._capacity.poke()

    def _serve(self, lease: Lease | None, endpoint: Endpoint) -> Endpoint:
        """Hand out the endpoint; a lease counts as in flight from this instant (not from when its caller resumes)."""
        if lease is not None and not lease.closed and lease.endpoint is None:
            lease.endpoint = endpoint
            self.in_flight += 1
            self._none_in_flight.clear()
            self.last_used = time.time()
        return endpoint

    async def unload(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send(Unload(done))
        await asyncio.shield(done)

    async def shutdown(self) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._send(Shutdown(done))
        await done

    # ----------------------------------------------------------------- the actor

    async def _run(self) -> None:
        while self.state != _S.SHUTDOWN:
            message = await self._inbox.get()
            try:
                if isinstance(message, Shutdown):
                    await self._shutdown(message)
                else:
                    self._handle(message)
            except StaleTransition as stale:
                logger.debug("model %s: dropped stale %s: %s", self.model_id, type(message).__name__, stale)
            except Exception:  # a bug in a handler must not leave the model without an owner
                logger.exception("model %s: handling %s failed", self.model_id, message)

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
            case Evict(reason=reason, idle_only=idle_only):
                self._on_evict(reason, idle_only)
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
                    self._resolve_waiters()
            case Stopped(generation=generation):
                self._on_stopped(generation)

    def _transition(
        self, expected: ModelState | frozenset[ModelState], target: ModelState, reason: str | None = None
    ) -> None:
        compare_and_swap(self.state, expected, target)
        logger.info(
            "model %s: %s -> %s%s", self.model_id, self.state, target, f" ({reason.splitlines()[0]})" if reason else ""
        )
        self.state, self.state_since, self.reason = target, time.time(), reason
        if target == _S.LOADING:
            self.generation += 1
            self.closed = False
        if target != _S.LOADED:
            self.endpoint = None
        self._events.publish(MODEL_STATE, self.model_id, state=str(target), reason=reason, generation=self.generation)
        self._capacity.poke()

    # -- loading

    def _on_wanted(self, force: bool) -> None:
        if not any(not w.future.done() for w in self._waiters):
            return
        if self.state == _S.LOADED and not self.closed:
            self._resolve_waiters()
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
        wanted = self._awaiting_capacity and any(not w.future.done() for w in self._waiters)
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
        self._events.publish(LOAD_PROGRESS, self.model_id, phase="starting", generation=self.generation)
        generation = self.generation
        self._operate(lambda: self._start(generation, attempts, delay_s))

    async def _start(self, generation: int, attempts: int, delay_s: float) -> None:
        """Start the runtime (with retries when restarting); report the outcome as a message."""
        if delay_s:
            await asyncio.sleep(delay_s)
        try:
            try:
                async for attempt in AsyncRetrying(
                    stop=stop_after_attempt(attempts),
                    wait=wait_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_MAX_S),
                    retry=retry_if_exception_type(RuntimeStartError),
                ):
                    with attempt:
                        if attempts > 1:
                            number = attempt.retry_state.attempt_number
                            logger.warning("restarting %s (attempt %d/%d)", self.model_id, number, attempts)
                            self._events.publish(LOAD_PROGRESS, self.model_id, phase="restarting", attempt=number)
                        endpoint = await self.runtime.start()
            except RetryError as error:
                failure = error.last_attempt.exception()
                reason = failure.reason if isinstance(failure, RuntimeStartError) else str(failure)
                prefix = f"gave up after {attempts} restart attempts: " if attempts > 1 else ""
                self._send(Started(generation, error=prefix + reason))
                return
        except asyncio.CancelledError:
            await self.runtime.stop()  # a load called off between spawn and ready leaves no child
            raise
        except Exception as error:  # whatever a runtime raises, the model must not stay `loading`
            logger.exception("model %s: start failed unexpectedly", self.model_id)
            await self.runtime.stop()
            self._send(Started(generation, error=f"{error.__class__.__name__}: {error}"))
            return
        self._send(Started(generation, endpoint=endpoint))

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
        self.endpoint = message.endpoint
        self.loaded_at = time.time()
        self.serving_since = time.monotonic()
        if not recovered:
            self.loads += 1
            self.last_load_s = time.monotonic() - self._load_started
            self._events.publish(LOAD_PROGRESS, self.model_id, phase="loaded", load_s=self.last_load_s)
        self._watch(self.generation)
        self._resolve_waiters()

    def _resolve_waiters(self) -> None:
        assert self.endpoint is not None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_result(self._serve(waiter.lease, self.endpoint))

    def _fail(self, expected: ModelState | frozenset[ModelState], reason: str) -> None:
        self._transition(expected, _S.FAILED, reason)
        self._cancel_watcher()
        self._capacity.release(self)
        self._reject_waiters(ModelUnavailable(f"model {self.model_id!r} failed to load: {reason}"))
        if self.runtime.self_healing:
            generation = self.generation
            self._operate(lambda: self._recover(generation))

    def _reject_waiters(self, error: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.future.done():
                waiter.future.set_exception(error)

    # -- liveness

    def _watch(self, generation: int) -> None:
        """The one watcher of this runtime instance; a new instance's watcher replaces (cancels) it."""
        self._cancel_watcher()

        async def watch() -> None:
            reason = await self.runtime.wait_until_down()
            self._send(Crashed(generation, reason))

        self._watcher = asyncio.create_task(watch(), name=f"watch:{self.model_id}:{generation}")

    def _cancel_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _on_crashed(self, generation: int, reason: str) -> None:
        if generation != self.generation or self.state != _S.LOADED:
            return  # that instance is already gone by our own hand
        self._watcher = None
        if self.runtime.self_healing:
            self._fail(_S.LOADED, reason)
            return
        attempts = self._settings.restart_max_attempts
        if attempts == 0:
            self._fail(_S.LOADED, f"{reason}\n(not restarted: restart_max_attempts = 0)")
            return
        self.restarts += 1
        up_s = time.time() - (self.loaded_at or 0.0)
        self.crash_streak = self.crash_streak + 1 if up_s < STABLE_UPTIME_S else 1
        if self.crash_streak > attempts:
            streak = f"crashed {self.crash_streak} times in a row, each within {STABLE_UPTIME_S:g}s of loading"
            self._fail(_S.LOADED, f"{streak}: {reason}")
            return
        # A child that keeps crashing soon after loading: back off before each restart, not only between
        # failed starts - each of those restarts succeeds, so without it a crash loop would spin at full speed.
        delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (self.crash_streak - 1)) if self.crash_streak > 1 else 0.0
        self._begin_loading(_S.LOADED, attempts=attempts, delay_s=delay, reason=reason)

    async def _recover(self, generation: int) -> None:
        """Probe an external backend until it serves again; the model stays ``failed`` meanwhile."""
        interval = self._settings.runtimes.remote.health_interval_s
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(RuntimeStartError):
                endpoint = await self.runtime.start()
                self._send(Started(generation, endpoint=endpoint))
                return

    # -- unloading

    def _on_unload(self, done: asyncio.Future[None]) -> None:
        if self._awaiting_capacity:
            self._awaiting_capacity = False
            self._capacity.withdraw(self)
            self._reject_waiters(ModelUnavailable(f"model {self.model_id!r} was unloaded while it waited for capacity"))
        if self.state == _S.UNLOADED:
            done.set_result(None)
            return
        self._unload_waiters.append(done)
        if self.state == _S.UNLOADING:
            return
        if self.state == _S.LOADING:
            self._reject_waiters(ModelUnavailable(f"model {self.model_id!r} was unloaded while it was loading"))
        self._begin_unloading(frozenset({_S.LOADING, _S.LOADED, _S.FAILED}), drain=self.state == _S.LOADED)

    def _on_evict(self, reason: str, idle_only: bool) -> None:
        if self.state != _S.LOADED or self.in_flight or (idle_only and self._leases):
            logger.debug(
                "model %s: eviction (%s) refused: %s, %d in flight", self.model_id, reason, self.state, self.in_flight
            )
            self._capacity.evict_refused(self)
            return
        kind = "swap" if self.closed else reason.split(":", 1)[0]  # swap: it yielded to a model that waited too long
        self._events.publish(EVICTION, self.model_id, reason=kind, detail=reason)
        self._begin_unloading(_S.LOADED, drain=False)

    def _begin_unloading(self, expected: ModelState | frozenset[ModelState], drain: bool) -> None:
        self._transition(expected, _S.UNLOADING)
        self._cancel_watcher()
        generation = self.generation
        self._operate(lambda: self._stop(generation, drain))

    async def _stop(self, generation: int, drain: bool) -> None:
        if drain and self.in_flight:
            try:
                await asyncio.wait_for(self._drained(), timeout=self._settings.drain_timeout_s)
            except TimeoutError:
                logger.warning("%s: %d requests still running after drain timeout", self.model_id, self.in_flight)
        await self.runtime.stop()
        self._send(Stopped(generation))

    async def _drained(self) -> None:
        while self.in_flight:
            await self._none_in_flight.wait()

    def _on_stopped(self, generation: int) -> None:
        if generation != self.generation:
            return
        unloading_since = self.state_since
        self._transition(_S.UNLOADING, _S.UNLOADED)
        if self._keep_alive_at <= unloading_since:  # set before the unload began: for the use that ends here
            self.keep_alive_s = None
        self._capacity.release(self)
        done, self._unload_waiters = self._unload_waiters, []
        for future in done:
            if not future.done():
                future.set_result(None)
        if self._waiters:
            self._on_wanted(force=False)  # requests that waited out the unload (a yielded model's queue)

    # -- the one operation

    def _operate(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` as the model's only operation, calling off whatever ran before.

        The new operation begins only once the old one has finished its own clean-up (a
        start called off stops the child it spawned), so two never touch the runtime at once.
        """
        previous = self._operation
        if previous is not None and not previous.done():
            previous.cancel()

        async def run() -> None:
            if previous is not None and not previous.done():
                await asyncio.wait({previous})
            await work()

        self._operation = asyncio.create_task(run(), name=f"operation:{self.model_id}")
        self._operation.add_done_callback(_log_failure)

    async def _shutdown(self, message: Shutdown) -> None:
        """Final: stop everything this model runs, whatever it was doing, and refuse all that waits."""
        for task in (self._operation, self._watcher):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self.runtime.stop()
        self._transition(frozenset(_S) - {_S.SHUTDOWN}, _S.SHUTDOWN)
        self._reject_waiters(ModelUnavailable(f"model {self.model_id!r} is unavailable: the service is shutting down"))
        for future in [*self._unload_waiters, message.done]:
            if not future.done():
                future.set_result(None)


def _log_failure(task: asyncio.Future[None]) -> None:
    """Retrieve an operation's outcome, so a bug in one is logged once and not as 'never retrieved'."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("model operation failed: %r", error)
