"""The actor's hands on its runtime: the slow work, one piece at a time, each ending in a message.

The actor decides (instantly, on its own task); :class:`RuntimeEffects` acts - start,
drain and stop, probe, watch - as the model's single operation and its single watcher
(:class:`SingleFlight`): starting an operation calls off the one before and waits for
its clean-up, so two never touch the runtime at once. None of this changes the model's
state: each piece reports its outcome with the generation it was started for, and the
actor judges whether that outcome still applies. So a start called off by an unload, or
a watcher of an instance already replaced, cannot overwrite the present.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from inference_service.events import LOAD_PROGRESS, EventBus
from inference_service.runtimes.base import Endpoint, Runtime, RuntimeStartError
from inference_service.supervisor.leases import LeaseBook
from inference_service.supervisor.messages import Crashed, Message, Started, Stopped
from inference_service.supervisor.restart_policy import RestartPolicy

logger = logging.getLogger(__name__)


class RuntimeEffects:
    """What can be done to ``runtime``; ``send`` posts each outcome to the actor's inbox."""

    def __init__(self, model_id: str, runtime: Runtime, events: EventBus, send: Callable[[Message], None]) -> None:
        self.model_id = model_id
        self.runtime = runtime
        self._events = events
        self._send = send
        self._operation = SingleFlight(f"operation:{model_id}", serial=True)
        self._watcher = SingleFlight(f"watch:{model_id}", serial=False)

    # ----------------------------------------------------------------- what the actor calls (never awaits)

    def start(self, generation: int, policy: RestartPolicy, attempts: int = 1, delay_s: float = 0.0) -> None:
        """Start the runtime (``attempts`` > 1: a restart, retried with backoff); answered by :class:`Started`."""
        runtime = self.runtime
        self._operation.start(lambda: self._start(runtime, generation, policy, attempts, delay_s))

    def stop(self, generation: int, leases: LeaseBook, drain_timeout_s: float | None) -> None:
        """Stop the runtime once its in-flight requests finish (up to ``drain_timeout_s`` when given); :class:`Stopped`."""
        runtime = self.runtime
        self._watcher.cancel()
        self._operation.start(lambda: self._stop(runtime, generation, leases, drain_timeout_s))

    def recover(self, generation: int, interval_s: float) -> None:
        """Probe an external backend until it serves again; :class:`Started` when it does."""
        runtime = self.runtime
        self._watcher.cancel()
        self._operation.start(lambda: self._recover(runtime, generation, interval_s))

    def watch(self, generation: int) -> None:
        """Watch this instance (replacing the last watcher); :class:`Crashed` if it goes down by itself."""
        runtime = self.runtime
        self._watcher.start(lambda: self._watch(runtime, generation))

    def replace_runtime(self, runtime: Runtime) -> None:
        """Act on ``runtime`` from now on (once the old one has stopped); work started before stays on the old one."""
        self.runtime = runtime

    async def halt(self) -> None:
        """Call off everything and stop the runtime, after every operation called off has finished
        its own clean-up (not only the newest: an older one may still be stopping the runtime)."""
        await self._operation.stop()
        await self._watcher.stop()
        await self.runtime.stop()

    # ----------------------------------------------------------------- the work itself

    async def _start(
        self, runtime: Runtime, generation: int, policy: RestartPolicy, attempts: int, delay_s: float
    ) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        try:
            endpoint = await self._start_with_retries(runtime, policy, attempts)
        except asyncio.CancelledError:
            await runtime.stop()  # a load called off between spawn and ready leaves no child
            raise
        except RuntimeStartError as failure:
            prefix = f"gave up after {attempts} restart attempts: " if attempts > 1 else ""
            self._send(Started(generation, error=prefix + failure.reason))
            return
        except Exception as error:  # whatever a runtime raises, the model must not stay `loading`
            logger.exception("model %s: start failed unexpectedly", self.model_id)
            await runtime.stop()
            self._send(Started(generation, error=f"{error.__class__.__name__}: {error}"))
            return
        self._send(Started(generation, endpoint=endpoint))

    async def _start_with_retries(self, runtime: Runtime, policy: RestartPolicy, attempts: int) -> Endpoint:
        attempt = 1
        while True:
            if attempts > 1:
                logger.warning("restarting %s (attempt %d/%d)", self.model_id, attempt, attempts)
                self._events.publish(LOAD_PROGRESS, self.model_id, phase="restarting", attempt=attempt)
            try:
                return await runtime.start()
            except RuntimeStartError:
                if attempt >= attempts:
                    raise
            await asyncio.sleep(policy.backoff_s(attempt))
            attempt += 1

    async def _stop(self, runtime: Runtime, generation: int, leases: LeaseBook, drain_timeout_s: float | None) -> None:
        if drain_timeout_s is not None and leases.in_flight:
            try:
                await asyncio.wait_for(leases.drained(), timeout=drain_timeout_s)
            except TimeoutError:
                logger.warning("%s: %d requests still running after drain timeout", self.model_id, leases.in_flight)
        await runtime.stop()
        self._send(Stopped(generation))

    async def _recover(self, runtime: Runtime, generation: int, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(RuntimeStartError):
                endpoint = await runtime.start()
                self._send(Started(generation, endpoint=endpoint))
                return

    async def _watch(self, runtime: Runtime, generation: int) -> None:
        reason = await runtime.wait_until_down()
        self._send(Crashed(generation, reason))


class SingleFlight:
    """Long work one task at a time: starting the next calls off the last.

    A task called off may still be cleaning up (a start cancelled between spawn and ready
    stops the child it spawned), so with ``serial`` the next one begins only when every
    task before it has finished: two never touch the runtime at once, however many were
    started and called off in between. :meth:`stop` waits for all of them, not only the
    newest. A task is called off once: cancelling it again would interrupt its clean-up.
    """

    def __init__(self, name: str, *, serial: bool) -> None:
        self._name = name
        self._serial = serial
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` as the only task, cancelling the ones before it (after them, when ``serial``)."""
        previous = {task for task in self._tasks if not task.done()}
        self.cancel()

        async def run() -> None:
            if self._serial and previous:
                await asyncio.wait(previous)
            await work()

        task = asyncio.create_task(run(), name=self._name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def cancel(self) -> None:
        """Call off every task without waiting (a watcher whose instance is gone has nothing to clean up)."""
        for task in self._tasks:
            if not task.cancelling():
                task.cancel()

    async def stop(self) -> None:
        """Call off every task and return once all have finished, clean-ups included."""
        while self._tasks:
            self.cancel()
            await asyncio.wait(set(self._tasks))

    def _finished(self, task: asyncio.Task[None]) -> None:
        """Forget ``task`` and retrieve its outcome, so a bug in one is logged once and not as 'never retrieved'."""
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("%s failed: %r", self._name, error, exc_info=error)
