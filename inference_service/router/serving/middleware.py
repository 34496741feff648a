"""Pure ASGI middleware (no BaseHTTPMiddleware: it buffers streams and hides client disconnects)."""

from __future__ import annotations

import contextvars
import logging
import random

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.router.observability import activity
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.gate import Gate, Headers, Refusal
from inference_service.router.tenancy.limits import Ticket

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
#: The request's ``X-Session-Id``: a conversation's key for choosing a model's replica (router/proxy/affinity.py).
session_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("session_id", default=None)


class BodyTooLarge(Exception):
    """Raised from ``receive`` once the body read so far passes ``max_body_bytes``."""

    def __init__(self, received: int, limit: int) -> None:
        super().__init__(f"Request body exceeds the limit of {limit} bytes")
        self.received = received
        self.limit = limit


def _new_request_id() -> str:
    """32 hex digits, like a uuid4's; a request id needs to be unique, not unguessable (no syscall)."""
    return f"{random.getrandbits(128):032x}"


def _tokens_used() -> int | None:
    """The request's prompt and completion tokens, as its runtimes reported them (every stage); 0 when
    it never reached a model (nothing to pay for); None when its calls reported none (the estimate stands)."""
    record = activity.current()
    if record is None:
        return None
    if record.prompt_tokens is None and record.completion_tokens is None:
        return 0 if record.model_calls == 0 else None
    return (record.prompt_tokens or 0) + (record.completion_tokens or 0)


def _host_header_invalid(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    """An HTTP/1.1 request must carry exactly one ``Host`` header (RFC 9112 section 3.2); uvicorn does not check.

    ``headers``: the request's headers as a dict; the raw list is counted only when the dict is
    shorter (some header came twice), so the usual request costs one lookup.
    """
    version: str = scope["http_version"]
    if version != "1.1":
        return False
    if b"host" not in headers:
        return True
    raw: list[tuple[bytes, bytes]] = scope["headers"]
    return len(headers) != len(raw) and [name for name, _ in raw].count(b"host") != 1


class RequestIdLogFilter(logging.Filter):
    """Adds ``%(request_id)s`` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # the access line names its request itself, after the fact
            record.request_id = request_id_var.get()
        return True


async def _send_error(scope: Scope, receive: Receive, send: Send, error: APIError, added: Headers) -> None:
    """Answer ``error`` in the envelope of the API called, ``added`` (request id, rate headers) on it."""
    response = error.response_for(scope["path"])
    response.raw_headers.extend(added)
    await response(scope, receive, send)


def _too_large(message: str) -> APIError:
    """The answer to a body over ``max_body_bytes``, whether its declared length or its bytes told."""
    return APIError(413, message, code="request_too_large")


class RequestContextMiddleware:
    """Request ids (taken from ``X-Request-ID`` or made up, echoed back), the key and its scopes
    (:class:`~inference_service.router.tenancy.gate.Gate`; the request then acts as that key), body size cap.

    A declared ``Content-Length`` over ``max_body_bytes`` is a 413 before the gate, so it is never
    charged to a key's limits (whoever sends it, the answer is the same). The size cap holds for
    chunked bodies too: ``receive`` is wrapped to count bytes as they stream in, so an oversized
    upload costs at most ``max_body_bytes`` of memory.
    """

    def __init__(self, app: ASGIApp, gate: Gate, max_body_bytes: int) -> None:
        self.app = app
        self._gate = gate
        self._max_body_bytes = max_body_bytes

    def _limited(self, receive: Receive, ticket: Ticket | None) -> Receive:
        """``receive`` that counts body bytes as they arrive and raises BodyTooLarge past the limit,
        so a chunked upload is refused after ``max_body_bytes``, not after being held whole; the
        whole body's size goes to a metered request's ``ticket`` (a chunked body declared none)."""
        received = 0
        limit = self._max_body_bytes

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(received, limit)
                if ticket is not None and not message.get("more_body", False):
                    ticket.body_read(received)
            return message

        return receive_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        request_id = headers.get(b"x-request-id", b"").decode(errors="replace")[:128] or _new_request_id()
        token = request_id_var.set(request_id)
        session = headers.get(b"x-session-id")
        session_token = session_id_var.set(session.decode(errors="replace")[:256] if session else None)
        id_header = (b"x-request-id", request_id.encode())
        try:
            if _host_header_invalid(scope, headers):
                invalid = APIError(400, "an HTTP/1.1 request needs exactly one Host header", code="invalid_http")
                await _send_error(scope, receive, send, invalid, [id_header, (b"connection", b"close")])
                return
            declared = headers.get(b"content-length", b"")
            body_bytes = int(declared) if declared.isdigit() else 0
            if body_bytes > self._max_body_bytes:  # before the limits: a 413 costs no tokens
                reason = f"Request body of {body_bytes} bytes exceeds the limit of {self._max_body_bytes}"
                await _send_error(scope, receive, send, _too_large(reason), [id_header])
                return
            admitted = self._gate.admit(scope["method"], scope["path"], headers.get(b"authorization", b""), body_bytes)
            if isinstance(admitted, Refusal):
                refused = APIError(admitted.status, admitted.message, admitted.type, code=admitted.code)
                await _send_error(scope, receive, send, refused, [id_header, *admitted.headers])
                return
            tenant = admitted.tenant
            if tenant is keys.ANONYMOUS:  # no key configured: the context's default, nothing to note
                await self._serve(scope, receive, send, [id_header], None)
                return
            if (record := activity.current()) is not None:  # not activity.note: this is every keyed request
                record.key = tenant.name
            tenant_token = keys.act_as(tenant)
            ticket = admitted.ticket
            rates = ticket.headers if ticket is not None else self._gate.tenancy.limits.headers(tenant)
            try:
                await self._serve(scope, receive, send, [id_header, *rates], ticket)
            finally:
                keys.release(tenant_token)
                if ticket is not None:
                    ticket.close(_tokens_used())
        finally:
            request_id_var.reset(token)
            session_id_var.reset(session_token)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, added: list[tuple[bytes, bytes]], ticket: Ticket | None
    ) -> None:
        """The body cap as it streams; ``added`` on the response: the request id, a limited key's
        ``x-ratelimit-*``; ``ticket``: a metered request's, told the size of its body."""
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *added]
            await send(message)

        try:
            await self.app(scope, self._limited(receive, ticket), send_with_id)
        except BodyTooLarge as error:
            if started:
                raise
            # The rest of the body is never read: close the connection rather than leave it unusable.
            await _send_error(scope, receive, send, _too_large(str(error)), [*added, (b"connection", b"close")])
