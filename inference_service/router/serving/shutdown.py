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
:func:`mark_feed`, it is ended (with a closing comment) as soon as draining starts and
never holds the drain up; an open dashboard does not cost every shutdown its grace.

The hot path pays a phase comparison, ``asyncio.current_task()`` and a set insertion per
request, and a ``bytes.endswith`` per streamed chunk. (Plain task cancellation rather than
an ``anyio.CancelScope`` per request: the scope measured ~20 us, a twentieth of the
router's whole CPU cost per proxied request.)
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.router.proxy.sse import DONE, OPENAI, STREAM_PROTOCOL_SCOPE_KEY, error_event
from inference_service.router.serving.errors import service_unavailable

logger = logging.getLogger(__name__)

#: Answered in every phase: liveness, and metrics so the drain itself can be watched.
STILL_SERVED = frozenset({"/health", "/metrics"})
SHUTTING_DOWN = "shutting_down"
#: The scope key :func:`mark_feed` sets (an ASGI scope extension; the scope travels the whole app).
FEED_SCOPE_KEY = "inference_service.feed"
#: How long the closing answers (a 503, or an error event and [DONE]) may take to send:
#: a client that reads nothing must not keep the process from exiting.
ANSWER_TIMEOUT_S = 5.0
SHUT_DOWN_STREAMING = "the server shut down while streaming"
#: The content types of streamed answers: SSE, and the NDJSON of Ollama's API.
STREAMED_CONTENT_TYPES = (b"text/event-stream", b"application/x-ndjson")
#: The last bytes of a feed the shutdown ends: an SSE comment.
FEED_CLOSED = b": the server is shutting down\n\n"


class Phase(enum.StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    CLOSING = "closing"


def mark_feed(scope: Scope) -> None:
    """Mark the request as an endless feed: it ends when draining starts instead of holding it up."""
    scope[FEED_SCOPE_KEY] = True


class _Request:
    """One request in flight: how to cancel it, and how far its response got."""

    __slots__ = ("_scope", "_send", "_task", "aborted", "complete", "done_sent", "started", "streaming")

    def __init__(self, send: Send, scope: Scope) -> None:
        self._send = send
        self._scope = scope
        self._task = asyncio.current_task()
        self.aborted = False
        self.started = False  # the status line went out
        self.streaming = False  # an SSE or NDJSON stream
        self.done_sent = False  # the stream's ``data: [DONE]`` went out
        self.complete = False  # the last body message went out

    async def send(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self.started = True
            for name, value in message.get("headers", ()):
                if name == b"content-type":
                    self.streaming = value.startswith(STREAMED_CONTENT_TYPES)
                    break
        elif not message.get("more_body"):
            self.complete = True
        elif self.streaming and message["body"].endswith(DONE):
            self.done_sent = True

    @property
    def feed(self) -> bool:
        return bool(self._scope.get(FEED_SCOPE_KEY, False))

    def abort(self) -> None:
        """Cancel the request's task: its upstream call, queue place or model wait ends at once.
        Once: a feed ended when draining started is not interrupted again while it answers."""
        if self._task is not None and not self.aborted:
            self.aborted = True
            self._task.cancel("cut off by shutdown")

    def forgive_abort(self) -> None:
        """The abort was ours to answer, not a reason for the request's task to end."""
        if self._task is not None and self._task.cancelling():
            self._task.uncancel()

    def _stream_ending(self) -> bytes:
        """What ends a stream the shutdown cut off, in the stream's own framing."""
        if self.feed:  # not an API stream: no error event, no [DONE]
            return FEED_CLOSED
        protocol = self._scope.get(STREAM_PROTOCOL_SCOPE_KEY, OPENAI)
        if protocol is OPENAI:  # ours (orchestration) or a relayed OpenAI stream
            return b"" if self.done_sent else error_event(SHUT_DOWN_STREAMING, SHUTTING_DOWN, SHUTTING_DOWN) + DONE
        return protocol.error_ending(SHUT_DOWN_STREAMING, SHUTTING_DOWN) if protocol is not None else b""

    async def answer_cut_short(self, scope: Scope) -> None:
        """Finish a response the shutdown cut off so that the client can tell what happened."""
        if self.complete:
            return
        with anyio.move_on_after(ANSWER_TIMEOUT_S), contextlib.suppress(OSError):
            if not self.started:
                error = service_unavailable(
                    "the server shut down before the request finished: retry it", SHUTTING_DOWN, retry_after_s=1
                )
                error.headers["Connection"] = "close"
                await error.response()(scope, _no_body, self._send)
            elif self.streaming:
                if ending := self._stream_ending():
                    await self._send({"type": "http.response.body", "body": ending, "more_body": True})
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            # A non-streamed body already on its way cannot be changed: the server closes the connection.


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class Shutdown:
    """The router's shutdown phase and the requests it has to account for."""

    def __init__(self, grace_s: Callable[[], float]) -> None:
        """``grace_s`` is asked when draining starts: the value in force then (a config reload changes it)."""
        self._grace_s = grace_s
        self.phase = Phase.SERVING
        self._running: set[_Request] = set()
        self._left = asyncio.Event()  # a request finished since the last look (set once not serving)
        self._skip_grace = asyncio.Event()

    @property
    def grace_s(self) -> float:
        return self._grace_s()

    def _advance(self, expected: Phase, target: Phase) -> bool:
        """Compare-and-swap the phase; a caller that finds another phase changes nothing."""
        if self.phase is not expected:
            return False
        logger.info("shutdown: %s -> %s (%d request(s) in flight)", expected, target, len(self._running))
        self.phase = target
        return True

    def _drained(self) -> bool:
        """Nothing but feeds (if anything) is running: they end with the drain, they don't hold it up."""
        return all(request.feed for request in self._running)

    def _empty(self) -> bool:
        return not self._running

    async def _until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition`` holds, looking again each time a request finishes."""
        while not condition():
            self._left.clear()
            await self._left.wait()

    def skip_grace(self) -> None:
        """Close now instead of after the grace (a second stop signal)."""
        self._skip_grace.set()

    async def drain_and_close(self) -> None:
        """Run the whole shutdown once; when it returns every request has been answered."""
        if not self._advance(Phase.SERVING, Phase.DRAINING):
            return
        for request in list(self._running):
            if request.feed:
                request.abort()
        finished = asyncio.ensure_future(self._until(self._drained))
        skipped = asyncio.ensure_future(self._skip_grace.wait())
        try:
            await asyncio.wait({finished, skipped}, timeout=self.grace_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            finished.cancel()
            skipped.cancel()
        self._advance(Phase.DRAINING, Phase.CLOSING)
        for request in list(self._running):
            request.abort()
        with contextlib.suppress(TimeoutError):  # each answer is bounded; this only guards against a bug
            await asyncio.wait_for(self._until(self._empty), timeout=2 * ANSWER_TIMEOUT_S)
        if self._running:
            logger.warning("shutdown: %d request(s) still running after closing", len(self._running))

    async def serve(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under the shutdown's control (refused unless serving)."""
        if self.phase is not Phase.SERVING and scope["path"] not in STILL_SERVED:
            error = service_unavailable(
                "the server is shutting down: retry on another instance", SHUTTING_DOWN, retry_after_s=1
            )
            error.headers["Connection"] = "close"
            await error.response()(scope, receive, send)
            return
        request = _Request(send, scope)
        self._running.add(request)
        try:
            try:
                await app(scope, receive, request.send)
            except asyncio.CancelledError:
                if not request.aborted:
                    raise  # not ours (the server's own cancellation): let it end the task
            if request.aborted:
                request.forgive_abort()
                await request.answer_cut_short(scope)
        finally:
            self._running.discard(request)
            if self.phase is not Phase.SERVING:
                self._left.set()


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
