"""Guards on client connections that uvicorn does not have: a header deadline and a cap.

- **Header deadline.** uvicorn arms no timer before a connection's first request, nor
  between the first byte of a request and its last header, so a client that trickles a
  header line now and then (slowloris) holds its connection - and a file descriptor -
  forever. Here every request must send its complete headers within
  ``header_timeout_s`` of its first byte (of the connection, for the first request), or
  the connection is closed.
- **Connection cap.** Past ``max_connections`` open connections, a new connection's
  request gets 503 ``too_many_connections`` with the OpenAI envelope and
  ``Connection: close`` instead of being served, so the router answers overload rather
  than running out of descriptors (each served request also holds one upstream).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from inference_service.router.errors import envelope

logger = logging.getLogger(__name__)

_TOO_MANY = json.dumps(
    envelope("the server has too many open connections: retry shortly", "too_many_connections", None, "too_many_connections")
).encode()


async def _too_many_connections(scope: Scope, receive: Receive, send: Send) -> None:
    await send({
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_TOO_MANY)).encode()),
            (b"retry-after", b"1"),
            (b"connection", b"close"),
        ],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": _TOO_MANY})


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the header deadline and the connection cap.

    Configure a subclass with :func:`guarded_http_protocol`; uvicorn instantiates it per connection.
    """

    header_timeout_s = 10.0
    max_connections = 512

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()
        if len(self.connections) > self.max_connections:
            logger.warning("%d open connections (max_connections): answering 503", len(self.connections))
            self.app = _too_many_connections  # this connection's request is answered 503, then it closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

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


def guarded_http_protocol(header_timeout_s: float, max_connections: int) -> type[GuardedHttpProtocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    limits = {"header_timeout_s": header_timeout_s, "max_connections": max_connections}
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), limits)
