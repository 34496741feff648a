"""Guards on client connections that uvicorn does not have: header and body deadlines, a cap.

- **Header deadline.** uvicorn arms no timer before a connection's first request, nor
  between the first byte of a request and its last header, so a client that trickles a
  header line now and then (slowloris) holds its connection - and a file descriptor -
  forever. Here every request must send its complete headers within
  ``header_timeout_s`` of its first byte (of the connection, for the first request), or
  the connection is closed.
- **Body deadline.** Nor does uvicorn time a request body: a client that declares
  ``Content-Length: 100000`` and stops after a few bytes, or trickles a chunked body a
  byte at a time, holds its connection (and a ``max_connections`` slot) for ever. Once a
  request's headers are complete, its whole body must arrive within ``body_timeout_s``,
  or the client gets 408 ``body_timeout`` (with the OpenAI envelope and
  ``Connection: close``; just the close if a response has already begun) and the
  connection is closed. The timer is armed on headers-complete and disarmed on
  message-complete: nothing is done per chunk, and the response (a stream included) is
  not timed. A request pipelined behind one still being answered is timed afresh, not
  cut: that wait is ours.
- **Unparseable requests.** What uvicorn cannot parse as HTTP/1.1 (two ``Content-Length``
  headers, chunked framing next to one, a bad chunk size) gets a 400 ``invalid_http`` in
  the OpenAI envelope with ``Connection: close``, not uvicorn's plain-text 400.
- **Connection cap.** Past ``max_connections`` open connections, a new connection's
  request gets 503 ``too_many_connections`` with the OpenAI envelope and
  ``Connection: close`` instead of being served, so the router answers overload rather
  than running out of descriptors (each served request also holds one upstream).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference_service.router.serving.errors import APIError

logger = logging.getLogger(__name__)

_TOO_MANY = APIError(
    503,
    "the server has too many open connections: retry shortly",
    "too_many_connections",
    code="too_many_connections",
    headers={"Retry-After": "1", "Connection": "close"},
)


async def _too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    await _TOO_MANY.response_for(scope["path"])(scope, receive, send)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the connection cap.

    Configure a subclass with :func:`guarded_http_protocol`; uvicorn instantiates it per connection.
    """

    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_connections = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None

    # uvicorn's protocol narrows asyncio's BaseTransport to the Transport it is always given
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()
        if len(self.connections) > self.max_connections:
            logger.warning("%d open connections (max_connections): answering 503", len(self.connections))
            self.app = _too_many_connections  # this connection's request is answered 503, then it closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        self._disarm_body_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):  # a WebSocket's frames are not a body
            self._arm_body_deadline()

    def on_message_complete(self) -> None:
        self._disarm_body_deadline()
        super().on_message_complete()

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        logger.debug("closing %s: no complete request headers within %gs", self.client, self.header_timeout_s)
        self.transport.close()

    def _arm_body_deadline(self) -> None:
        self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_too_slow)

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        if self.pipeline:
            # Pipelined behind a request still being answered (a stream, maybe), whose
            # response must be neither cut short nor interleaved with a 408; uvicorn reads
            # this one's body once it is its turn. That wait is ours: time it afresh.
            self._arm_body_deadline()
            return
        logger.debug(
            "closing %s: request body not complete within %gs of its headers", self.client, self.body_timeout_s
        )
        if not self.cycle.response_started:
            # Written past the app, which is waiting for the body: once the connection is
            # lost its ``receive`` returns ``http.disconnect`` and whatever it sends is dropped.
            message = f"the request body did not arrive within {self.body_timeout_s:g}s of its headers (body_timeout_s)"
            timed_out = APIError(408, message, code="body_timeout")
            self.transport.write(self._closing_error(timed_out, self.scope["path"]))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes it cannot parse as HTTP/1.1 - in the envelope, not plain text."""
        message = "the request is not valid HTTP/1.1 (its request line, headers or chunked framing)"
        # No path to go by: the request line itself may be what could not be parsed.
        invalid = APIError(400, message, code="invalid_http")
        self.transport.write(self._closing_error(invalid, ""))
        self.transport.close()

    def _closing_error(self, error: APIError, path: str) -> bytes:
        """A whole error response, written on the transport itself (no app is answering), ending the connection:
        ``error`` in the envelope of the API ``path`` belongs to."""
        response = error.response_for(path)
        body = bytes(response.body)
        status = f"{response.status_code} {HTTPStatus(response.status_code).phrase}".encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        return b"\r\n".join([b"HTTP/1.1 " + status, *(name + b": " + value for name, value in headers), b"", body])


def guarded_http_protocol(
    header_timeout_s: float, body_timeout_s: float, max_connections: int
) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    limits = {
        "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s,
        "max_connections": max_connections,
    }
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), limits)
