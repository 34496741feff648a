"""A proxied stream: admitted, relayed and released by one coroutine - the response's own.

The response object holds nothing until the server runs it. Admission (queue slot, the
model's lease, the upstream connection) happens inside ``__call__`` and is released there
by ``async with``: a response that is never run - its request cancelled between the
handler's return and the server calling it - holds nothing, and no generator's
``finally`` or the garbage collector is relied on to free a llama-server slot.

Per relayed run of events the cost is one upstream read, a substring search and one
``send``. No generator chain, no timer per send (one watchdog per stream catches a client
that stops reading), no task group (one parked task catches a client that hangs up, as
for non-streamed requests).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from inference_service.router.proxy.dispatch import served_model_headers
from inference_service.router.proxy.sse import SSE_HEADERS, STREAM_PROTOCOL_SCOPE_KEY, StreamProtocol, relay
from inference_service.router.services import Services
from inference_service.router.serving.disconnect import ClientDisconnected, unless_disconnected
from inference_service.router.serving.errors import APIError

logger = logging.getLogger(__name__)

_STREAM_HEADERS = [(name.lower().encode(), value.encode()) for name, value in SSE_HEADERS.items()]


class ProxiedStream(Response):
    """The SSE response of a proxied streaming request; errors before the first byte are JSON
    envelopes in the shape of the stream's API (``protocol.error_body``).

    A client that accepts nothing for ``send_timeout_s`` (a full socket buffer) has its
    stream cancelled: the request's task is cancelled by the watchdog, the upstream
    connection closed (the runtime frees the slot) and the server drops the connection.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        svc: Services,
        model_id: str,
        path: str,
        endpoint: str,
        body: dict[str, Any],
        priority: int,
        request_id: str,
        protocol: StreamProtocol,
        started: float,
    ) -> None:
        """``endpoint``: the metrics label of ``path``; ``started``: when the request came in (latency)."""
        super().__init__(status_code=200, media_type=self.media_type)
        self._svc = svc
        self._model_id = model_id
        self._path = path
        self._endpoint = endpoint
        self._started = started
        self._body = body
        self._priority = priority
        self._request_id = request_id
        self._protocol = protocol
        self._send_timeout_s = svc.settings.stream_send_timeout_for(model_id)
        self._sending_since: float | None = None  # when the send in progress began (the watchdog's clue)
        self._slow_reader = False
        self._watchdog: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_later(self._send_timeout_s, self._check_sending, loop, task)
        outcome: str | BaseException
        try:
            outcome = await unless_disconnected(receive, self._admit_and_relay(scope, receive, send))
        except ClientDisconnected as gone:
            outcome = gone  # nothing to answer: the server drops the connection
        except asyncio.CancelledError as cancelled:
            outcome = cancelled
            if not self._slow_reader or task.uncancel() > 0:
                raise  # not ours (the shutdown's, the server's): let it end the request
            # The response cannot be finished (the client takes no bytes): returning leaves the
            # server to close the connection; the upstream request is closed already.
            logger.warning("client accepted nothing for %gs: stream cancelled", self._send_timeout_s)
            self._svc.metrics.slow_readers.labels(self._model_id).inc()
        except BaseException as error:
            outcome = error
            raise
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._svc.metrics.record_request(self._model_id, self._endpoint, self._started, outcome)

    async def _admit_and_relay(self, scope: Scope, receive: Receive, send: Send) -> str:
        """Admit, relay, release; the metrics status of the request."""
        try:
            stream = await self._svc.dispatcher.open_stream(
                self._model_id, self._path, self._body, self._priority, self._request_id
            )
        except APIError as error:
            await error.response(self._protocol.error_body(error))(scope, receive, send)
            return str(error.status)
        async with stream:
            served = [(name.lower().encode(), value.encode()) for name, value in served_model_headers().items()]
            content_type = (b"content-type", self._protocol.content_type)
            await send(
                {"type": "http.response.start", "status": 200, "headers": [content_type, *_STREAM_HEADERS, *served]}
            )
            scope[STREAM_PROTOCOL_SCOPE_KEY] = self._protocol

            loop_time = asyncio.get_running_loop().time

            async def send_events(data: bytes) -> None:
                self._sending_since = loop_time()
                await send({"type": "http.response.body", "body": data, "more_body": True})
                self._sending_since = None

            await relay(stream.blocks(), self._protocol, send_events)
            scope[STREAM_PROTOCOL_SCOPE_KEY] = None  # its last event went out: nothing to add if cut off now
        # Released before the last (empty) message: once the response is complete, the server
        # reports the connection as gone and the disconnect watch must be over by then.
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return "200"

    def _check_sending(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        """The watchdog: cancel the request if one send has been blocked for the whole timeout."""
        since, now = self._sending_since, loop.time()
        if since is not None and now - since >= self._send_timeout_s:
            self._slow_reader = True
            task.cancel("client accepted nothing for stream_send_timeout_s")
            return
        next_check = self._send_timeout_s - (now - since) if since is not None else self._send_timeout_s
        self._watchdog = loop.call_later(next_check, self._check_sending, loop, task)
