"""The supervisor: the single owner of every model's state and every runtime process.

All state changes happen on the event loop, through :meth:`_ManagedModel.transition`,
so each model's state has exactly one writer and every transition is logged. Loads are
single-flight (one task per model, shared by every waiter), crashes are noticed through
the runtime's own exit signal rather than polling, and capacity is enforced by evicting
the least recently used idle model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from inference_service.config import ModelConfig, Settings
from inference_service.events import MODEL_STATE, EventBus
from inference_service.runtimes.base import Endpoint, ProcessInfo, Runtime, RuntimeStartError
from inference_service.supervisor.footprint import estimate_mb
from inference_service.supervisor.state import ModelState, check_transition

logger = logging.getLogger(__name__)

RuntimeFactory = Callable[[ModelConfig], Runtime]

#: Restart backoff (seconds): base * 2**(n-1), capped - between failed starts, and between crashes in a row.
_BACKOFF_BASE_S, _BACKOFF_MAX_S = 0.25, 10.0
#: A child that served this long before crashing starts a new crash streak (it was not crash-looping).
_STABLE_UPTIME_S = 60.0


class SupervisorError(Exception):
    pass


class UnknownModel(SupervisorError):
    def __init__(self, name: str, known: Sequence[str]) -> None:
        super().__init__(f"model {name!r} does not exist; available: {', '.join(known)}")


class InsufficientCapacity(SupervisorError):
    """Loading would exceed max_loaded_models / memory_budget_mb and nothing idle can be evicted."""


class ModelUnavailable(SupervisorError):
    """The model failed to load or its backend is down; the message carries the reason."""


def _being_cancelled() -> bool:
    """Whether the running task itself has been asked to stop (as opposed to something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@contextlib.contextmanager
def _cancelled_by_stop_signals(task: asyncio.Task[None]) -> Iterator[None]:
    """While the block runs, SIGTERM/SIGINT also cancel ``task``, then reach the handler installed before.

    Only handlers that are Python callables (uvicorn's, Python's SIGINT default) are chained;
    a signal left at its OS default still ends the process, and PR_SET_PDEATHSIG the children.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    chained = {sig: handler for sig, handler in previous.items() if callable(handler)}

    def handle(sig: int, frame: object) -> None:
        loop.call_soon_threadsafe(task.cancel)  # wakes the loop, which may be blocked in select()
        chained[sig](sig, frame)

    for sig in chained:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in chained.items():
            signal.signal(sig, handler)


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
    restarts: int
    footprint_mb: int | None
    loaded_at: float | None
    last_used: float | None
    state_since: float


class _ManagedModel:
    """Everything the supervisor tracks for one model. Only the supervisor mutates it."""

    def __init__(self, config: ModelConfig, runtime: Runtime, events: EventBus) -> None:
        self.config = config
        self.events = events
        self.runtime = runtime
        self.state = ModelState.UNLOADED
        self.state_since = time.time()
        self.reason: str | None = None
        self.endpoint: Endpoint | None = None
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.last_used: float | None = None
        self.loaded_at: float | None = None
        self.restarts = 0
        self.crash_streak = 0  # consecutive crashes, each within _STABLE_UPTIME_S of (re)loading
        self.footprint_mb: int | None = None
        self.load_task: asyncio.Task[Endpoint] | None = None
        self.unload_task: asyncio.Task[None] | None = None
        self.watch_task: asyncio.Task[None] | None = None
        self.retired = False  # removed by a config reload: draining, never loaded again
        self.reconfigured: asyncio.Future[None] | None = None  # set while a new config's restart is pending

    def transition(self, target: ModelState, reason: str | None = None) -> None:
        check_transition(self.state, target)
        logger.info("model %s: %s -> %s%s", self.config.id, self.state, target, f" ({reason.splitlines()[0]})" if reason else "")
        self.state = target
        self.state_since = time.time()
        self.reason = reason
        if target == ModelState.LOADED:
            self.loaded_at = time.time()
        elif target in (ModelState.UNLOADED, ModelState.FAILED):
            self.endpoint = None
        self.events.publish(MODEL_STATE, self.config.id, state=str(target), reason=reason)


class Supervisor:
    """Loads, watches, restarts and unloads models. Public surface: load/unload/ensure_ready/status."""

    def __init__(self, settings: Settings, runtime_factory: RuntimeFactory, events: EventBus | None = None) -> None:
        self._settings = settings
        self._runtime_factory = runtime_factory
        self.events = events or EventBus()
        self._models = {
            model_id: _ManagedModel(cfg, runtime_factory(cfg), self.events) for model_id, cfg in settings.models.items()
        }
        self._capacity_lock = asyncio.Lock()
        self._reaper: asyncio.Task[None] | None = None
        self._closing = False

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the idle reaper and load every ``preload`` model (failures are recorded, not raised)."""
        self._reaper = asyncio.create_task(self._reap_idle(), name="supervisor:ttl")
        preloading = asyncio.create_task(self._preload(), name="supervisor:preload")
        # The server only acts on SIGTERM/SIGINT once start-up is over, and a preload can take up to
        # health_timeout_s: stop waiting at once instead, so shutdown (close) follows promptly.
        with _cancelled_by_stop_signals(preloading):
            try:
                await preloading
            except asyncio.CancelledError:
                if _being_cancelled():
                    raise
                logger.warning("stop signal during preload: not waiting for the models still loading")

    async def _preload(self) -> None:
        preload = [model_id for model_id, m in self._models.items() if m.config.preload]
        results = await asyncio.gather(*(self.load(model_id) for model_id in preload), return_exceptions=True)
        for model_id, result in zip(preload, results):
            if isinstance(result, BaseException):
                logger.error("preload of %s failed: %s", model_id, result)

    async def close(self) -> None:
        """Stop everything we started. Called on shutdown; leaves no child behind."""
        self._closing = True
        tasks = [self._reaper] + [t for m in self._models.values() for t in (m.load_task, m.watch_task, m.unload_task)]
        pending = [task for task in tasks if task is not None and not task.done()]
        for task in pending:
            task.cancel()
        # Let cancelled loads finish their own cleanup first: a load cancelled between fork and
        # bookkeeping would otherwise leave a child that the stops below cannot see.
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.gather(*(m.runtime.stop() for m in self._models.values()), return_exceptions=True)
        logger.info("supervisor stopped all runtimes")

    # ----------------------------------------------------------------- public API

    @property
    def model_ids(self) -> list[str]:
        return list(self._models)

    def status(self, model_id: str) -> ModelStatus:
        managed = self._get(model_id)
        return ModelStatus(
            id=model_id,
            runtime=managed.config.runtime,
            state=managed.state,
            reason=managed.reason,
            aliases=list(managed.config.aliases),
            roles=list(managed.config.roles),
            process=managed.runtime.process_info(),
            in_flight=managed.in_flight,
            restarts=managed.restarts,
            footprint_mb=managed.footprint_mb,
            loaded_at=managed.loaded_at,
            last_used=managed.last_used,
            state_since=managed.state_since,
        )

    def logs(self, model_id: str) -> Sequence[str]:
        return self._get(model_id).runtime.log_lines()

    async def load(self, model_id: str) -> Endpoint:
        """Bring a model to ``loaded`` and return its endpoint. Concurrent callers share one attempt."""
        managed = self._get(model_id)
        while True:
            if managed.retired:
                raise UnknownModel(model_id, [m for m, other in self._models.items() if not other.retired])
            if managed.reconfigured is not None:  # wait for the new config's runtime rather than start the old one
                await asyncio.shield(managed.reconfigured)
                continue
            if managed.unload_task is not None:
                await asyncio.shield(managed.unload_task)
                continue
            if managed.state == ModelState.LOADED and managed.endpoint is not None:
                return managed.endpoint
            if managed.load_task is None or managed.load_task.done():
                managed.load_task = asyncio.create_task(self._load(managed), name=f"load:{model_id}")
            task = managed.load_task
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled() or _being_cancelled():
                    raise
                # The shared attempt was called off (an unload, or shutdown): that is this caller's
                # answer, not its own cancellation, so it must not escape as one (a 500 with no body).
                raise ModelUnavailable(f"model {model_id!r} was unloaded while it was loading") from None

    async def ensure_ready(self, model_id: str) -> Endpoint:
        """The endpoint of a serving model, loading it on demand.

        A failed model answers at once with its reason instead of making every request
        pay for a doomed start: an external backend until its probe succeeds, a local one
        for ``failed_retry_s`` (an explicit :meth:`load` always tries again).
        """
        managed = self._get(model_id)
        if managed.state == ModelState.FAILED:
            cooling = time.time() - managed.state_since < self._settings.failed_retry_s
            if managed.runtime.self_healing or cooling:
                raise ModelUnavailable(f"model {model_id!r} is unavailable: {managed.reason}")
        return await self.load(model_id)

    @contextlib.asynccontextmanager
    async def lease(self, model_id: str) -> AsyncIterator[Endpoint]:
        """Use a model for one request: loads on demand and keeps it from being unloaded meanwhile."""
        endpoint = await self.ensure_ready(model_id)
        managed = self._models[model_id]
        managed.in_flight += 1
        managed.idle.clear()
        managed.last_used = time.time()
        try:
            yield endpoint
        finally:
            managed.in_flight -= 1
            managed.last_used = time.time()
            if managed.in_flight == 0:
                managed.idle.set()

    async def unload(self, model_id: str) -> None:
        """Unload a model, letting in-flight requests finish first (up to ``drain_timeout_s``)."""
        task = self._begin_unload(self._get(model_id))
        if task is not None:
            await asyncio.shield(task)

    def _begin_unload(self, managed: _ManagedModel) -> asyncio.Task[None] | None:
        """Start unloading once; the task lives on the model, so nobody's await is needed to keep it alive."""
        if managed.unload_task is None and managed.state != ModelState.UNLOADED:
            managed.unload_task = asyncio.create_task(self._unload(managed), name=f"unload:{managed.config.id}")
        return managed.unload_task

    # ----------------------------------------------------------------- reconfiguration (config reload)

    def update_settings(self, settings: Settings) -> None:
        """Top-level limits (capacity, drain, restarts, retry) apply from the next decision on.

        Per-model configs are not taken from ``settings``: models change only through
        :meth:`add_model`, :meth:`remove_model` and :meth:`replace_model`.
        """
        self._settings = settings

    def add_model(self, config: ModelConfig) -> None:
        """Start managing a new model, ``unloaded`` (the caller loads it if it wants it preloaded)."""
        if config.id in self._models:
            raise SupervisorError(f"model {config.id!r} already exists")
        self._models[config.id] = _ManagedModel(config, self._runtime_factory(config), self.events)

    async def remove_model(self, model_id: str) -> None:
        """Stop managing a model: refuse new loads at once, drain in-flight requests, stop it, forget it."""
        managed = self._get(model_id)
        managed.retired = True
        await self.unload(model_id)
        if self._models.get(model_id) is managed:
            del self._models[model_id]

    async def replace_model(self, config: ModelConfig, restart: bool) -> None:
        """Give a model a new config.

        ``restart=False`` (only routing or idle settings changed): swapped in place, the
        process untouched. ``restart=True`` (launch settings changed): in-flight requests
        drain, the process stops, and - if it was loaded or loading - starts again with the
        new settings. Requests arriving meanwhile wait for that load; none is refused.
        """
        managed = self._get(config.id)
        if not restart:
            managed.config = config
            return
        was_up = managed.state in (ModelState.LOADING, ModelState.LOADED)
        managed.reconfigured = asyncio.get_running_loop().create_future()
        try:
            await self.unload(config.id)
            managed.config = config
            managed.runtime = self._runtime_factory(config)
            managed.footprint_mb = None
            managed.crash_streak = 0
        finally:
            managed.reconfigured.set_result(None)
            managed.reconfigured = None
        if was_up:
            await self.load(config.id)

    # ----------------------------------------------------------------- internals

    def _get(self, model_id: str) -> _ManagedModel:
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModel(model_id, list(self._models)) from None

    async def _load(self, managed: _ManagedModel) -> Endpoint:
        if managed.state != ModelState.LOADING:
            managed.transition(ModelState.LOADING)
        try:
            if managed.runtime.local:
                await self._make_room_for(managed)
            endpoint = await managed.runtime.start()
        except (RuntimeStartError, InsufficientCapacity) as error:
            reason = error.reason if isinstance(error, RuntimeStartError) else str(error)
            if isinstance(error, InsufficientCapacity):
                managed.transition(ModelState.UNLOADING)
                managed.transition(ModelState.UNLOADED, reason)
                raise
            managed.transition(ModelState.FAILED, reason)
            if managed.runtime.self_healing:
                self._watch(managed, self._recover(managed))
            raise ModelUnavailable(f"model {managed.config.id!r} failed to load: {reason}") from None
        except asyncio.CancelledError:
            await managed.runtime.stop()
            raise
        managed.endpoint = endpoint
        managed.transition(ModelState.LOADED)
        self._watch(managed, self._watch_liveness(managed))
        return endpoint

    def _watch(self, managed: _ManagedModel, coroutine: object) -> None:
        managed.watch_task = asyncio.create_task(coroutine, name=f"watch:{managed.config.id}")  # type: ignore[arg-type]

    async def _watch_liveness(self, managed: _ManagedModel) -> None:
        """Wait for the backend to go down by itself, then restart it (or probe it, if not ours)."""
        reason = await managed.runtime.wait_until_down()
        if managed.state != ModelState.LOADED or self._closing:
            return  # we are the ones stopping it
        if not managed.runtime.self_healing and self._settings.restart_max_attempts == 0:
            managed.transition(ModelState.FAILED, f"{reason}\n(not restarted: restart_max_attempts = 0)")
            return
        managed.restarts += 1
        up_s = time.time() - (managed.loaded_at or 0.0)
        managed.crash_streak = managed.crash_streak + 1 if up_s < _STABLE_UPTIME_S else 1
        if managed.runtime.self_healing:
            managed.transition(ModelState.FAILED, reason)
            await self._recover(managed)
            return
        managed.transition(ModelState.LOADING, reason)
        managed.load_task = asyncio.create_task(self._restart(managed), name=f"restart:{managed.config.id}")
        # Nobody may be waiting on the restart: retrieve its outcome so a final failure (already
        # recorded as the model's reason) is not reported again as "exception never retrieved".
        managed.load_task.add_done_callback(lambda task: task.cancelled() or task.exception())

    async def _restart(self, managed: _ManagedModel) -> Endpoint:
        """Restart a crashed child with exponential backoff, then give up as ``failed``.

        Backoff applies twice: between start attempts that fail, and before restarting a
        child that keeps crashing soon after it loaded (each of those restarts *succeeds*,
        so without a streak a crash loop would respawn at full speed forever).
        """
        attempts = self._settings.restart_max_attempts
        streak = managed.crash_streak
        if streak > attempts:
            reason = f"crashed {streak} times in a row, each within {_STABLE_UPTIME_S:g}s of loading: {managed.reason}"
            managed.transition(ModelState.FAILED, reason)
            raise ModelUnavailable(f"model {managed.config.id!r} failed: {reason}")
        if streak > 1:
            await asyncio.sleep(min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (streak - 1)))
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=_BACKOFF_BASE_S, max=_BACKOFF_MAX_S),
                retry=retry_if_exception_type(RuntimeStartError),
            ):
                with attempt:
                    number = attempt.retry_state.attempt_number
                    logger.warning("restarting %s (attempt %d/%d)", managed.config.id, number, attempts)
                    endpoint = await managed.runtime.start()
        except RetryError as error:
            failure = error.last_attempt.exception()
            reason = failure.reason if isinstance(failure, RuntimeStartError) else str(failure)
            managed.transition(ModelState.FAILED, f"gave up after {attempts} restart attempts: {reason}")
            raise ModelUnavailable(f"model {managed.config.id!r} failed: {reason}") from None
        managed.endpoint = endpoint
        managed.transition(ModelState.LOADED)
        self._watch(managed, self._watch_liveness(managed))
        return endpoint

    async def _recover(self, managed: _ManagedModel) -> None:
        """Probe an external backend until it serves again; it stays ``failed`` meanwhile."""
        interval = self._settings.runtimes.remote.health_interval_s
        while managed.state == ModelState.FAILED and not self._closing:
            await asyncio.sleep(interval)
            with contextlib.suppress(RuntimeStartError):
                managed.endpoint = await managed.runtime.start()
                managed.transition(ModelState.LOADED)
                self._watch(managed, self._watch_liveness(managed))
                return

    async def _unload(self, managed: _ManagedModel) -> None:
        try:
            if managed.load_task is not None and not managed.load_task.done():
                managed.load_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, SupervisorError):
                    await managed.load_task
            if managed.state == ModelState.UNLOADED:
                return
            managed.transition(ModelState.UNLOADING)
            try:
                await asyncio.wait_for(managed.idle.wait(), timeout=self._settings.drain_timeout_s)
            except TimeoutError:
                logger.warning("%s: %d requests still running after drain timeout", managed.config.id, managed.in_flight)
            if managed.watch_task is not None:
                managed.watch_task.cancel()
            await managed.runtime.stop()
            managed.transition(ModelState.UNLOADED)
        finally:
            managed.unload_task = None

    async def _make_room_for(self, managed: _ManagedModel) -> None:
        """Evict least-recently-used idle models until ``managed`` fits the configured limits."""
        settings = self._settings
        if settings.max_loaded_models is None and settings.memory_budget_mb is None:
            return
        if managed.footprint_mb is None and managed.config.path is not None:
            path = settings.model_path(managed.config)
            managed.footprint_mb = estimate_mb(path, managed.config.ctx_size) if path.is_file() else None
        budget = settings.memory_budget_mb
        if budget is not None and (managed.footprint_mb or 0) > budget:
            # Evicting everything would not make it fit: refuse before costing anyone their model.
            raise InsufficientCapacity(
                f"cannot load {managed.config.id!r}: it needs ~{managed.footprint_mb} MB, "
                f"more than the whole memory_budget_mb={budget}"
            )
        async with self._capacity_lock:
            while True:
                resident = [
                    m for m in self._models.values()
                    if m is not managed and m.runtime.local
                    and m.state in (ModelState.LOADING, ModelState.LOADED, ModelState.UNLOADING)
                ]  # fmt: skip
                count_ok = settings.max_loaded_models is None or len(resident) + 1 <= settings.max_loaded_models
                used_mb = sum(m.footprint_mb or 0 for m in resident)
                mine = managed.footprint_mb or 0
                memory_ok = settings.memory_budget_mb is None or used_mb + mine <= settings.memory_budget_mb
                if count_ok and memory_ok:
                    return
                idle = [m for m in resident if m.state == ModelState.LOADED and m.in_flight == 0]
                leaving = [m.unload_task for m in resident if m.state == ModelState.UNLOADING and m.unload_task]
                if not idle and leaving:
                    # Already on its way out (draining, or stopping): its room is coming, so wait for it
                    # rather than refuse. Unloads never take the capacity lock, so holding it cannot deadlock.
                    await asyncio.wait(leaving)
                    continue
                if not idle:
                    raise InsufficientCapacity(
                        f"cannot load {managed.config.id!r}: {len(resident)} model(s) resident using ~{used_mb} MB "
                        f"(limits: max_loaded_models={settings.max_loaded_models}, "
                        f"memory_budget_mb={settings.memory_budget_mb}, this model needs ~{mine} MB) "
                        "and none is idle to evict"
                    )
                victim = min(idle, key=lambda m: m.last_used or m.loaded_at or 0.0)
                logger.info("evicting idle %s (LRU) to make room for %s", victim.config.id, managed.config.id)
                await self.unload(victim.config.id)

    async def _reap_idle(self) -> None:
        """Unload models idle longer than their ``ttl_s``."""
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for model_id, managed in self._models.items():
                ttl = managed.config.ttl_s
                if not ttl or managed.state != ModelState.LOADED or managed.in_flight:
                    continue
                # Idle since its last request or its (re)load, whichever is later: a request served
                # before an earlier unload says nothing about how long this load has been idle.
                idle_s = now - max(managed.last_used or 0.0, managed.loaded_at or now)
                if idle_s >= ttl:
                    logger.info("model %s idle for %.0fs (ttl %gs): unloading", model_id, idle_s, ttl)
                    self._begin_unload(managed)
