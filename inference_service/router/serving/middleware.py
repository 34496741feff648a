"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and hides client disconnects)."""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.router.serving.errors import envelope

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

#: No key needed: probes, and the dashboard's page (it holds no data; it asks for the key).
PUBLIC_PATHS = frozenset({"/health", "/health/ready", "/ui"})
PUBLIC_PREFIX = "/ui/"  # the dashboard's static assets


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body read so far passes ``max_body_bytes``."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(f"Request body exceeds the limit of {limit} bytes")
        self.received = received
        self.limit = limit


def _new_request_id() -> str:
    """32 hex digits, like a uuid4's; a request id needs to be unique, not unguessable (no syscall)."""
    return f"{random.getrandbits(128):032x}"


def _host_header_invalid(scope: Scope) -> bool:
    """An HTTP/1.1 request must carry exactly one ``Host`` header (RFC 9112 section 3.2); uvicorn does not check."""
    version: str = scope["http_version"]
    return version == "1.1" and sum(name == b"host" for name, _ in scope["headers"]) != 1


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


class RequestIdLogFilter(logging.Filter):
    """Adds ``%(request_id)s`` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # the access line names its request itself, after the fact
            record.request_id = request_id_var.get()
        return True


async def _send_error(
    send: Send, status: int, message: str, type: str, code: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(envelope(message, type, None, code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Request ids (taken from ``X-Request-ID`` or made up, echoed back), bearer auth, body size cap.

    The size cap holds for chunked bodies too: ``receive`` is wrapped to count bytes as they
    stream in, so an oversized upload costs at most ``max_body_bytes`` of memory.
    """

    def __init__(self, app: ASGIApp, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._api_key = api_key.encode() if api_key else None
        self._max_body_bytes = max_body_bytes

    def _authorized(self, authorization: bytes) -> bool:
        """``Bearer <key>``; the scheme is case-insensitive (RFC 9110 section 11.1), the key is not."""
        scheme, _, supplied = authorization.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(supplied.strip(), self._api_key or b"")

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes as they arrive and raises BodyTooLarge past the limit,
        so a chunked upload is refused after ``max_body_bytes``, not after being held whole."""
        received = 0
        limit = self._max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(received, limit)
            return message

        return receive_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode(errors="replace")[:128] or _new_request_id()
        token = request_id_var.set(request_id)
        id_header = (b"x-request-id", request_id.encode())
        try:
            if _host_header_invalid(scope):
                await _send_error(
                    send,
                    400,
                    "an HTTP/1.1 request needs exactly one Host header",
                    "invalid_request_error",
                    "invalid_http",
                    [id_header, (b"connection", b"close")],
                )
                return
            if (
                self._api_key is not None
                and not _public(scope["path"])
                and not self._authorized(headers.get(b"authorization", b""))
            ):
                await _send_error(
                    send,
                    401,
                    "Missing or invalid API key: send 'Authorization: Bearer <key>'",
                    "authentication_error",
                    "invalid_api_key",
                    [id_header, (b"www-authenticate", b"Bearer")],
                )
                return
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
                await _send_error(
                    send,
                    413,
                    f"Request body of {int(declared)} bytes exceeds the limit of {self._max_body_bytes}",
                    "invalid_request_error",
                    "request_too_large",
                    [id_header],
                )
                return

            started = False

            async def send_with_id(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    message["headers"] = [*message.get("headers", []), id_header]
                await send(message)

            try:
                await self.app(scope, self._limited(receive), send_with_id)
            except BodyTooLarge as error:
                if started:
                    raise
                # The rest of the body is never read: close the connection rather than leave it unusable.
                await _send_error(
                    send,
                    413,
                    str(error),
                    "invalid_request_error",
                    "request_too_large",
                    [id_header, (b"connection", b"close")],
                )
        finally:
            request_id_var.reset(token)
