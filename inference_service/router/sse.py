"""Re-streaming Server-Sent Events to the client: framing, one ``[DONE]``, errors as events."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Send

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
        yield error_event(f"the model stopped while streaming: {error}", code="upstream_died")
    yield DONE


class SSEResponse(StreamingResponse):
    """A streamed response that closes its body generator the moment sending stops.

    When a client disconnects while the body is suspended (Starlette cancels the send, or on
    ASGI 2.4 servers just stops iterating), nothing closes the generator: it - and the
    upstream connection holding a llama-server slot - would live on until garbage
    collection, sometimes for seconds. Closing it here, shielded from the cancellation
    that ended the send, runs every ``finally`` down the chain at once and frees the slot.
    """

    def __init__(self, body: AsyncGenerator[bytes, None]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self._body = body

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()


def sse_response(body: AsyncGenerator[bytes, None]) -> SSEResponse:
    return SSEResponse(body)
