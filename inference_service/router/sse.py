"""Re-streaming Server-Sent Events to the client: framing, one ``[DONE]`` (OpenAI chat and
completions) or the protocol's terminal event (named-event streams), errors as events."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Message, Send

from inference_service.router.errors import envelope
from inference_service.router.upstream import UpstreamUnreachable

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    return b"data: " + json.dumps(envelope(message, type, None, code)).encode() + b"\n\n"


async def relay(events: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """Frame upstream events for the client. Whatever happens upstream, the client sees
    exactly one ``data: [DONE]`` at the end - after an error event if the stream broke."""
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                if event == b"data: [DONE]":
                    break
                yield event + b"\n\n"
            else:
                logger.warning("upstream stream ended without [DONE]")
                yield error_event("the model's stream ended unexpectedly", code="stream_incomplete")
    except UpstreamUnreachable as error:
        logger.warning("upstream died mid-stream: %s", error)
        yield error_event(str(error), code="upstream_died")
    yield DONE


class SlowReader(Exception):
    """The client accepted nothing for the stream's send timeout."""


@dataclass(frozen=True)
class StreamProtocol:
    """A stream that ends with a last event of its own rather than ``data: [DONE]``.

    Anthropic Messages and OpenAI Responses streams are ``event: <name>`` + ``data:`` pairs
    ending with a terminal event; llama-server's native ``/infill`` stream ends with a
    ``"stop": true`` chunk. A relay that appended ``[DONE]`` would hand those clients a
    line they cannot parse, so each is relayed intact and ended its own way.
    """

    is_last: Callable[[bytes], bool]
    error_event: Callable[[str, str], bytes]  # (message, code) -> a complete error event


def _event_name(event: bytes) -> bytes | None:
    return event[7:].split(b"\n", 1)[0].strip() if event.startswith(b"event: ") else None


def _named_events(terminal: set[bytes], error: Callable[[str, str], dict[str, Any]]) -> StreamProtocol:
    return StreamProtocol(
        is_last=lambda event: _event_name(event) in terminal | {b"error"},
        error_event=lambda message, code: b"event: error\ndata: " + json.dumps(error(message, code)).encode() + b"\n\n",
    )


ANTHROPIC = _named_events(
    {b"message_stop"}, lambda message, code: {"type": "error", "error": {"type": "api_error", "message": message}}
)
OPENAI_RESPONSES = _named_events(
    {b"response.completed", b"response.failed", b"response.incomplete"},
    lambda message, code: {"type": "error", "code": code, "message": message, "param": None},
)
LLAMACPP_NATIVE = StreamProtocol(
    is_last=lambda event: b'"stop":true' in event or event.startswith(b"data: {\"error\""),
    error_event=lambda message, code: error_event(message, code=code),
)


async def relay_until_last(events: AsyncGenerator[bytes, None], protocol: StreamProtocol) -> AsyncGenerator[bytes, None]:
    """Relay events intact until the protocol's last one; a stream that breaks before it
    ends with the protocol's own error event - never with an OpenAI ``[DONE]``."""
    try:
        async with contextlib.aclosing(events):
            async for event in events:
                yield event + b"\n\n"
                if protocol.is_last(event):
                    return
        logger.warning("upstream stream ended without its last event")
        yield protocol.error_event("the model's stream ended unexpectedly", "stream_incomplete")
    except UpstreamUnreachable as error:
        logger.warning("upstream died mid-stream: %s", error)
        yield protocol.error_event(f"the model stopped while streaming: {error}", "upstream_died")


class SSEResponse(StreamingResponse):
    """A streamed response that closes its body generator the moment sending stops.

    When a client disconnects while the body is suspended (Starlette cancels the send, or on
    ASGI 2.4 servers just stops iterating), nothing closes the generator: it - and the
    upstream connection holding a llama-server slot - would live on until garbage
    collection, sometimes for seconds. Closing it here, shielded from the cancellation
    that ended the send, runs every ``finally`` down the chain at once and frees the slot.

    A client that stays connected but stops reading makes ``send`` block once the socket
    buffers are full; after ``send_timeout_s`` of that the stream is given up the same way
    (``on_send_timeout`` is told) instead of holding the slot for as long as the client likes.
    """

    def __init__(
        self,
        body: AsyncGenerator[bytes, None],
        send_timeout_s: float | None = None,
        on_send_timeout: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self._body = body
        self._send_timeout_s = send_timeout_s
        self._on_send_timeout = on_send_timeout

    async def _send_within_timeout(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await send(message)
        except TimeoutError:
            raise SlowReader from None

    async def stream_response(self, send: Send) -> None:
        bounded_send = send if self._send_timeout_s is None else functools.partial(self._send_within_timeout, send)
        try:
            await super().stream_response(bounded_send)
        except SlowReader:
            # The response cannot be finished (the client takes no bytes): returning leaves the
            # server to close the connection; the finally below cancels the upstream request.
            logger.warning("client accepted nothing for %gs: stream cancelled", self._send_timeout_s)
            if self._on_send_timeout is not None:
                self._on_send_timeout()
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()


def sse_response(
    body: AsyncGenerator[bytes, None],
    send_timeout_s: float | None = None,
    on_send_timeout: Callable[[], None] | None = None,
) -> SSEResponse:
    return SSEResponse(body, send_timeout_s, on_send_timeout)
