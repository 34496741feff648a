"""The router's one stream engine: an event stream admitted, relayed and released by one
coroutine - the response's own.

Every streamed response - a proxied stream (Server-Sent Events, or Ollama's NDJSON lines), a
streamed orchestration, a feed (the event bus, a followed log) - is an :class:`EventStream`
running a :class:`StreamSource`:
``open`` (admission: queue slot, the model's lease, the upstream connection) before the first
byte, ``relay`` until the stream's last event, ``aclose`` whatever happened. The response
object holds nothing until the server runs it, and ``__call__`` releases everything it
opened: a response that is never run - its request cancelled between the handler's return
and the server calling it - holds nothing, and no generator's ``finally`` or the garbage
collector is relied on to free a llama-server slot.

One policy for a client that goes wrong, whatever the stream:

- one that hangs up is caught by one parked task, as for non-streamed requests: the
  stream's coroutine is cancelled, so its upstream call or running orchestration stage ends
  at once and the slot is free before the response returns. Should the source lose that
  one cancellation (Python 3.11's ``asyncio.wait_for`` swallows one that arrives as its
  result does), its next send raises ClientDisconnected: uvicorn drops sends to a
  connection that is gone without an error, so nothing else would ever end the stream;
- one that accepts nothing for ``send_timeout_s`` (a full socket buffer) has its stream
  cancelled the same way by one watchdog per stream, and is counted as a slow reader.

Per relayed run of events the cost is one upstream read, a substring search and one
``send``: no generator chain, no timer per send, no task group.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from inference_service.router.observability import activity
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.dispatch import Dispatcher, served_model_headers
from inference_service.router.proxy.resume.relay import continuation_for, relay_resuming
from inference_service.router.proxy.sse import (
    OPENAI_HIDING_USAGE,
    SSE_CONTENT_TYPE,
    SSE_HEADERS,
    STREAM_PROTOCOL_SCOPE_KEY,
    StreamProtocol,
    relay,
)
from inference_service.router.proxy.upstream_stream import UpstreamStream
from inference_service.router.services import Services
from inference_service.router.serving.disconnect import CLIENT_CLOSED, ClientDisconnected, unless_disconnected
from inference_service.router.serving.errors import APIError

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
#: Sends a run of complete events to the client (the stream's only way to write).
Emit = Callable[[bytes], Awaitable[None]]

_STREAM_HEADERS: Headers = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()]


class StreamSource(Protocol):
    """What an :class:`EventStream` relays, and everything the stream holds while it runs."""

    @property
    def protocol(self) -> StreamProtocol | None:
        """How the stream ends and how its early errors look; None for a feed (no API framing)."""

    async def open(self) -> Headers:
        """Take what the stream needs before its first byte; the headers it adds to the response.

        An APIError is answered as a JSON error in the protocol's shape. Holds nothing if it raises.
        """

    async def relay(self, emit: Emit) -> None:
        """Send the stream's events with ``emit`` until its last one went out."""

    async def aclose(self) -> None:
        """Release what ``open`` and ``relay`` took; run once ``open`` succeeded, however the stream ended."""


@dataclass(frozen=True)
class Counted:
    """Where an API stream is counted: requests and latency by model and endpoint, slow readers by model."""

    metrics: Metrics
    model_id: str
    endpoint: str
    started: float  # when the request came in (latency)


class EventStream(Response):
    """A streamed response (Server-Sent Events unless the protocol says otherwise), run by one
    coroutine from admission to release.

    Errors before the first byte are JSON envelopes in the shape of the stream's API
    (``APIError.response_for``); after it, they are the source's to tell in-band.
    """

    media_type = "text/event-stream"

    def __init__(
        self, source: StreamSource, send_timeout_s: float | None = None, counted: Counted | None = None
    ) -> None:
        """``send_timeout_s``: how long one send may block before the client counts as a slow
        reader (None: never, for a feed); ``counted``: where the request is counted, if anywhere."""
        super().__init__(status_code=200, media_type=self.media_type)
        self._source = source
        self._send_timeout_s = send_timeout_s
        self._counted = counted
        self._sending_since: float | None = None  # when the send in progress began (the watchdog's clue)
        self._slow_reader = False
        self._client_gone = False  # the disconnect watch saw the hang-up
        self._watchdog: asyncio.TimerHandle | None = None

    @classmethod
    def for_model(
        cls, svc: Services, model_id: str, endpoint: str, started: float, source: StreamSource
    ) -> EventStream:
        """An API stream served by ``model_id``: cut off after its ``stream_send_timeout_s``, counted under it."""
        send_timeout_s = svc.settings.stream_send_timeout_for(model_id)
        return cls(source, send_timeout_s, Counted(svc.metrics, model_id, endpoint, started))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        if self._send_timeout_s is not None:
            self._watchdog = loop.call_later(self._send_timeout_s, self._check_sending, loop, task)
        outcome: str | BaseException
        try:
            outcome = await unless_disconnected(receive, self._open_and_relay(scope, receive, send), self._client_left)
        except ClientDisconnected as gone:
            outcome = gone  # nothing to answer: the server drops the connection
        except asyncio.CancelledError as cancelled:
            outcome = cancelled
            if not self._slow_reader or task.uncancel() > 0:
                raise  # not ours (the shutdown's, the server's): let it end the request
            # The response cannot be finished (the client takes no bytes): returning leaves the
            # server to close the connection; the source is closed already.
            logger.warning("client accepted nothing for %gs: stream cancelled", self._send_timeout_s)
            if self._counted is not None:
                self._counted.metrics.slow_readers.labels(self._counted.model_id).inc()
        except BaseException as error:
            outcome = error
            raise
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._record(outcome)

    def _client_left(self) -> None:
        self._client_gone = True

    def _record(self, outcome: str | BaseException) -> None:
        """A counted stream is recorded - counted, timed, its status decided - by ``record_request``,
        as every request is; a feed is not counted, but a client that left it shows in its access line."""
        if (counted := self._counted) is not None:
            counted.metrics.record_request(counted.model_id, counted.endpoint, counted.started, outcome)
        elif isinstance(outcome, ClientDisconnected):
            activity.note(status=CLIENT_CLOSED)

    async def _open_and_relay(self, scope: Scope, receive: Receive, send: Send) -> str:
        """Open, relay, release; the metrics status of the request."""
        source = self._source
        try:
            added_headers = await source.open()
        except APIError as error:
            await error.response_for(scope["path"])(scope, receive, send)
            return str(error.status)
        loop_time = asyncio.get_running_loop().time

        async def emit(data: bytes, more_body: bool = True) -> None:
            if self._client_gone:  # its cancellation was lost: see the module's docstring
                raise ClientDisconnected
            self._sending_since = loop_time()
            await send({"type": "http.response.body", "body": data, "more_body": more_body})
            self._sending_since = None

        content_type = source.protocol.content_type if source.protocol is not None else SSE_CONTENT_TYPE
        headers = [(b"content-type", content_type), *_STREAM_HEADERS, *added_headers]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            scope[STREAM_PROTOCOL_SCOPE_KEY] = source.protocol
            await source.relay(emit)
            scope[STREAM_PROTOCOL_SCOPE_KEY] = None  # its last event went out: nothing to add if cut off now
        finally:
            await source.aclose()
        # Released before the last (empty) message: once the response is complete, the server
        # reports the connection as gone and the disconnect watch must be over by then.
        await emit(b"", more_body=False)
        return "200"

    def _check_sending(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        """The watchdog: cancel the request if one send has been blocked for the whole timeout."""
        assert self._send_timeout_s is not None
        since, now = self._sending_since, loop.time()
        if since is not None and now - since >= self._send_timeout_s:
            self._slow_reader = True
            task.cancel("client accepted nothing for stream_send_timeout_s")
            return
        next_check = self._send_timeout_s - (now - since) if since is not None else self._send_timeout_s
        self._watchdog = loop.call_later(next_check, self._check_sending, loop, task)


class ProxiedStream:
    """A proxied stream's source: one admitted upstream call, relayed intact in its protocol's framing.

    The upstream is this object's to hold: ``open`` takes it, ``aclose`` releases whichever
    upstream it holds then. Everything the client sees - the headers, ``emit``, the
    watchdog, the disconnect watch - belongs to the :class:`EventStream`, so the upstream can
    be replaced mid-stream (a runtime that died, resumed elsewhere) without the client noticing.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        model_id: str,
        path: str,
        body: dict[str, Any],
        priority: int,
        request_id: str | None,
        protocol: StreamProtocol,
        hide_usage: bool = False,
    ) -> None:
        """``hide_usage``: ``body`` asked for an OpenAI chat stream's usage chunk that its client did
        not (:func:`asking_usage`), so the chunk is counted but not sent (``protocol`` is OPENAI)."""
        self._dispatcher = dispatcher
        self.model_id = model_id
        self._path = path
        self.body = body
        self._priority = priority
        self._request_id = request_id
        self.protocol = protocol
        self._relayed_as = OPENAI_HIDING_USAGE if hide_usage else protocol  # the relay's framing
        self._upstream: UpstreamStream | None = None

    @property
    def upstream(self) -> UpstreamStream:
        assert self._upstream is not None
        return self._upstream

    async def open(self) -> Headers:
        self._upstream = await self._open(self.body)
        return [(name.lower().encode(), value.encode()) for name, value in served_model_headers().items()]

    async def _open(self, body: dict[str, Any]) -> UpstreamStream:
        return await self._dispatcher.open_stream(self.model_id, self._path, body, self._priority, self._request_id)

    async def relay(self, emit: Emit) -> None:
        continuation = continuation_for(self._dispatcher, self._path)
        if continuation is None:
            await relay(self.upstream.blocks(), self._relayed_as, emit)
        else:
            await relay_resuming(self._dispatcher, self, continuation, self._relayed_as, emit)

    async def reopen(self, body: dict[str, Any]) -> UpstreamStream:
        """Replace the upstream (its runtime died): the dead call's slot and lease go first, so the
        continuation queues like any request and never holds two slots."""
        dead, self._upstream = self._upstream, None
        if dead is not None:
            await dead.aclose()
        self._upstream = await self._open(body)
        return self._upstream

    async def aclose(self) -> None:
        if self._upstream is not None:
            await self._upstream.aclose()


class Feed:
    """A feed's source: events from an endless async generator (the event bus, a followed log).

    ``aclose`` closes the generator, so its ``finally`` (unsubscribing, say) runs as soon as
    the stream ends - the client left, or the shutdown ended the feed.
    """

    protocol: StreamProtocol | None = None

    def __init__(self, events: AsyncGenerator[bytes, None]) -> None:
        self._events = events

    async def open(self) -> Headers:
        return []

    async def relay(self, emit: Emit) -> None:
        async for event in self._events:
            await emit(event)

    async def aclose(self) -> None:
        await self._events.aclose()
