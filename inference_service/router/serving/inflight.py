"""The requests in flight: one registry of every HTTP request running, and the one way to cut
one off from outside and still answer it.

Two callers cut requests off: the shutdown (every request left once its grace is over) and
``POST /v1/requests/{id}/cancel`` (one inference request). Both go through :meth:`InFlightRequest.abort`,
which cancels the request's task - so whatever it was doing ends the way a client hanging up
ends it: a queued request leaves its model's admission queue, a running upstream call is
closed (llama-server frees the slot), an orchestration's stages are cancelled. Then the
request is answered so that its client can tell what happened (:class:`CutOff` says what):
a stream that started gets an error event and ``data: [DONE]`` (its protocol's own error
event for named-event and NDJSON streams), anything else an error envelope.

An entry lives exactly as long as :meth:`InFlight.run` for its request: added before the
app runs, discarded in its ``finally`` - nothing else adds or removes one, so no path can
leak one. Looking a request up by id walks the set: a cancel is rare, and the hot path pays
one set insertion and removal per request, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.router.observability import activity
from inference_service.router.observability.activity import Activity
from inference_service.router.proxy.sse import DONE, OPENAI, STREAM_PROTOCOL_SCOPE_KEY, error_event
from inference_service.router.serving.errors import APIError, request_cancelled
from inference_service.router.serving.middleware import request_id_var

#: How long the answer of a request cut off (an envelope, or an error event and [DONE]) may take
#: to send: a client that reads nothing must not hold up the shutdown or keep a cancelled request.
ANSWER_TIMEOUT_S = 5.0
#: The scope key :func:`mark_feed` sets (an ASGI scope extension; the scope travels the whole app).
FEED_SCOPE_KEY = "inference_service.feed"
#: The content types of streamed answers: SSE, and the NDJSON of Ollama's API.
STREAMED_CONTENT_TYPES = (b"text/event-stream", b"application/x-ndjson")
#: The last bytes of a feed the shutdown ends: an SSE comment.
FEED_CLOSED = b": the server is shutting down\n\n"


def mark_feed(scope: Scope) -> None:
    """Mark the request as an endless feed (the event bus, a followed log): the shutdown ends it
    when draining starts instead of waiting for it, with a closing comment rather than an API error."""
    scope[FEED_SCOPE_KEY] = True


@dataclass(frozen=True)
class CutOff:
    """Why requests are cut off, and what their clients are told."""

    reason: str  # the task's cancellation message
    answer: Callable[[], APIError]  # the answer of a response not begun yet
    stream_message: str  # the error event that ends a stream begun
    code: str  # that event's ``type`` and ``code``


#: ``POST /v1/requests/{id}/cancel``: a 499 ``request_cancelled`` (see :func:`request_cancelled`).
CANCELLED = CutOff(
    "cancelled by POST /v1/requests/{id}/cancel",
    request_cancelled,
    "the request was cancelled while streaming",
    "request_cancelled",
)


class InFlightRequest:
    """One request in flight: who it is, how to cut it off, and how far its response got."""

    __slots__ = (
        "_scope",
        "_send",
        "_task",
        "activity",
        "complete",
        "cut",
        "done_sent",
        "request_id",
        "started",
        "started_at",
        "streaming",
    )

    def __init__(self, send: Send, scope: Scope) -> None:
        self._send = send
        self._scope = scope
        self._task = asyncio.current_task()
        self.request_id = request_id_var.get()
        self.activity: Activity | None = activity.current()  # filled in as the request is served
        self.started_at = time.time()
        self.cut: CutOff | None = None  # set once, by the first abort
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

    @property
    def inference(self) -> bool:
        """An inference request - its route named the API endpoint it serves: what a cancel may cut off."""
        return self.activity is not None and self.activity.endpoint is not None

    def abort(self, cut: CutOff) -> None:
        """Cancel the request's task: its upstream call, queue place or model wait ends at once.
        Once: a request already cut off (a feed ended when draining started, a cancelled request)
        is not interrupted again while it answers, and keeps its first answer."""
        if self._task is not None and self.cut is None:
            self.cut = cut
            self._task.cancel(cut.reason)

    def forgive_abort(self) -> None:
        """The abort was ours to answer, not a reason for the request's task to end."""
        if self._task is not None and self._task.cancelling():
            self._task.uncancel()

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/requests`` shows of it."""
        record = self.activity
        return {
            "id": self.request_id,
            "key": record.key if record else None,
            "model": record.model if record else None,
            "endpoint": record.endpoint if record else None,
            "mode": record.mode if record else None,
            "started_at": self.started_at,
            "streaming": self.streaming,
        }

    def _stream_ending(self, cut: CutOff) -> bytes:
        """What ends a stream cut off, in the stream's own framing."""
        if self.feed:  # not an API stream: no error event, no [DONE]
            return FEED_CLOSED
        protocol = self._scope.get(STREAM_PROTOCOL_SCOPE_KEY, OPENAI)
        if protocol is OPENAI:  # ours (orchestration) or a relayed OpenAI stream
            return b"" if self.done_sent else error_event(cut.stream_message, cut.code, cut.code) + DONE
        return protocol.error_ending(cut.stream_message, cut.code) if protocol is not None else b""

    async def answer_cut_short(self, scope: Scope) -> None:
        """Finish a response that was cut off so that the client can tell what happened."""
        if self.complete or self.cut is None:
            return
        with anyio.move_on_after(ANSWER_TIMEOUT_S), contextlib.suppress(OSError):
            if not self.started:
                await self.cut.answer().response_for(scope["path"])(scope, _no_body, self._send)
            elif self.streaming:
                if ending := self._stream_ending(self.cut):
                    await self._send({"type": "http.response.body", "body": ending, "more_body": True})
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            # A non-streamed body already on its way cannot be changed: the server closes the connection.


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class InFlight:
    """The one registry of the requests in flight (see the module docstring)."""

    def __init__(self) -> None:
        self._running: set[InFlightRequest] = set()
        self._left = asyncio.Event()  # a request finished since the last look

    def __iter__(self) -> Iterator[InFlightRequest]:
        """A snapshot: cutting requests off while iterating is safe."""
        return iter(list(self._running))

    def __len__(self) -> int:
        return len(self._running)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition`` holds, looking again each time a request finishes."""
        while not condition():
            self._left.clear()
            await self._left.wait()

    def cancel(self, request_id: str) -> int:
        """Cut off the inference requests in flight with this id (a client may reuse its own
        ``X-Request-ID``); how many there are - 0 when none is (any more). Idempotent: a request
        already cut off counts, and keeps its first answer."""
        found = [request for request in self._running if request.request_id == request_id and request.inference]
        for request in found:
            request.abort(CANCELLED)
        return len(found)

    def inference(self) -> list[InFlightRequest]:
        """The inference requests in flight, oldest first."""
        return sorted((request for request in self._running if request.inference), key=lambda r: r.started_at)

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request in the registry; answer it if it was cut off."""
        request = InFlightRequest(send, scope)
        self._running.add(request)
        try:
            try:
                await app(scope, receive, request.send)
            except asyncio.CancelledError:
                if request.cut is None:
                    raise  # not ours (the server's own cancellation): let it end the task
            if request.cut is not None:
                request.forgive_abort()
                await request.answer_cut_short(scope)
        finally:
            self._running.discard(request)
            self._left.set()
