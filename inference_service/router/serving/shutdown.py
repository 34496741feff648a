"""Graceful shutdown: the router's phase, one owner, ``serving -> draining -> closing``.

**draining** (the first SIGTERM/SIGINT): ``/health/ready`` and every new request get 503
``shutting_down`` at once (``/health`` and ``/metrics`` still answer), while requests
already running may finish for up to ``shutdown_grace_s``.

**closing** (the grace is over, every request finished, or a second signal): each
request still running is cancelled - which releases its upstream slot - and answered
properly: a stream that already started gets an error event and ``data: [DONE]``,
anything else a 503 envelope. No client sees a truncated body or a bare 500. Only then
does the server stop and the supervisor stop the children.

A **feed** - the event stream, a followed log - has no end to wait for: marked with
:func:`~.inflight.mark_feed`, it is ended (with a closing comment) as soon as draining starts and
never holds the drain up; an open dashboard does not cost every shutdown its grace.

The requests in flight, and how one cut off is answered, are :mod:`.inflight`'s (the cancel
endpoint cuts requests off the same way). The hot path pays a phase comparison here, and
there ``asyncio.current_task()`` and a set insertion per request, and a ``bytes.endswith``
per streamed chunk. (Plain task cancellation rather than an ``anyio.CancelScope`` per
request: the scope measured ~20 us, a twentieth of the router's whole CPU cost per proxied
request.)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from inference_service.router.serving.errors import APIError, service_unavailable
from inference_service.router.serving.inflight import ANSWER_TIMEOUT_S, CutOff, InFlight

logger = logging.getLogger(__name__)

#: Answered in every phase: liveness, and metrics so the drain itself can be watched.
STILL_SERVED = frozenset({"/health", "/metrics"})
SHUTTING_DOWN = "shutting_down"


def _shut_down_answer() -> APIError:
    error = service_unavailable(
        "the server shut down before the request finished: retry it", SHUTTING_DOWN, retry_after_s=1
    )
    error.headers["Connection"] = "close"
    return error


#: How the shutdown cuts requests off: a 503 ``shutting_down``, or that error event in a stream begun.
SHUT_DOWN = CutOff("cut off by shutdown", _shut_down_answer, "the server shut down while streaming", SHUTTING_DOWN)


class Phase(enum.StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    CLOSING = "closing"


class Shutdown:
    """The router's shutdown phase, over the requests in flight it has to account for."""

    def __init__(self, grace_s: Callable[[], float], requests: InFlight | None = None) -> None:
        """``grace_s`` is asked when draining starts: the value in force then (a config reload changes it).
        ``requests``: the app's registry of requests in flight (None: one of its own)."""
        self._grace_s = grace_s
        self.requests = requests if requests is not None else InFlight()
        self.phase = Phase.SERVING
        self._skip_grace = asyncio.Event()

    @property
    def grace_s(self) -> float:
        return self._grace_s()

    def _advance(self, expected: Phase, target: Phase) -> bool:
        """Compare-and-swap the phase; a caller that finds another phase changes nothing."""
        if self.phase is not expected:
            return False
        logger.info("shutdown: %s -> %s (%d request(s) in flight)", expected, target, len(self.requests))
        self.phase = target
        return True

    def _drained(self) -> bool:
        """Nothing but feeds (if anything) is running: they end with the drain, they don't hold it up."""
        return all(request.feed for request in self.requests)

    def _empty(self) -> bool:
        return not self.requests

    def skip_grace(self) -> None:
        """Close now instead of after the grace (a second stop signal)."""
        self._skip_grace.set()

    async def drain_and_close(self) -> None:
        """Run the whole shutdown once; when it returns every request has been answered."""
        if not self._advance(Phase.SERVING, Phase.DRAINING):
            return
        for request in self.requests:
            if request.feed:
                request.abort(SHUT_DOWN)
        finished = asyncio.ensure_future(self.requests.until(self._drained))
        skipped = asyncio.ensure_future(self._skip_grace.wait())
        try:
            await asyncio.wait({finished, skipped}, timeout=self.grace_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            skipped.cancel()
        self._advance(Phase.DRAINING, Phase.CLOSING)
        for request in self.requests:
            request.abort(SHUT_DOWN)
        with contextlib.suppress(TimeoutError):  # each answer is bounded; this only guards against a bug
            await asyncio.wait_for(self.requests.until(self._empty), timeout=2 * ANSWER_TIMEOUT_S)
        if self.requests:
            logger.warning("shutdown: %d request(s) still running after closing", len(self.requests))

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the shutdown's control (refused unless serving)."""
        if self.phase is not Phase.SERVING and scope["path"] not in STILL_SERVED:
            error = service_unavailable(
                "the server is shutting down: retry on another instance", SHUTTING_DOWN, retry_after_s=1
            )
            error.headers["Connection"] = "close"
            await error.response_for(scope["path"])(scope, receive, send)
            return
        await self.requests.run(app, scope, receive, send)


class ShutdownMiddleware:
    """Pure ASGI middleware putting every HTTP request under :class:`Shutdown`."""

    def __init__(self, app: ASGIApp, shutdown: Shutdown) -> None:
        self.app = app
        self._shutdown = shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self._shutdown.serve(self.app, scope, receive, send)
