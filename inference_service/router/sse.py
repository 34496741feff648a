"""Re-streaming Server-Sent Events to the client: framing, one ``[DONE]``, errors as events."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import anyio
from fastapi.responses import StreamingResponse
from starlette.types import Send

from inference_service.router.errors import envelope
from inference_service.router.upstream import UpstreamUnreachable

if TYPE_CHECKING:
    from inference_service.router.dispatch import UpstreamStream

logger = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]"
DONE = DONE_EVENT + b"\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    return b"data: " + json.dumps(envelope(message, type, None, code)).encode() + b"\n\n"


def _done_at(block: bytes) -> int:
    """Where the upstream's own ``[DONE]`` event starts in a block of whole events, or -1.

    Only at an event's start: JSON escapes newlines, so ``\\n\\ndata: [DONE]`` cannot be text
    a model generated, while ``data: [DONE]`` alone could be."""
    if block.startswith(DONE_EVENT):
        return 0
    at = block.find(b"\n\n" + DONE_EVENT)
    return at + 2 if at >= 0 else -1


async def relay(stream: UpstreamStream) -> AsyncGenerator[bytes, None]:
    """Pass an upstream stream's blocks of whole events (``open_stream(blocks=True)``) through
    untouched. Whatever happens upstream, the client sees exactly one ``data: [DONE]`` at the
    end - after an error event if the stream broke; the last block and it go in one send."""
    ending = DONE
    try:
        async with contextlib.aclosing(stream):
            async for block in stream:
                if (done := _done_at(block)) >= 0:
                    ending = block[:done] + DONE
                    break
                yield block
            else:
                logger.warning("upstream stream ended without [DONE]")
                ending = error_event("the model's stream ended unexpectedly", code="stream_incomplete") + DONE
    except UpstreamUnreachable as error:
        logger.warning("upstream died mid-stream: %s", error)
        ending = error_event(f"the model stopped while streaming: {error}", code="upstream_died") + DONE
    yield ending


class SSEResponse(StreamingResponse):
    """A streamed response that closes its body generator the moment sending stops.

    When a client disconnects while the body is suspended (Starlette cancels the send, or on
    ASGI 2.4 servers just stops iterating), nothing closes the generator: it - and the
    upstream connection holding a llama-server slot - would live on until garbage
    collection, sometimes for seconds. Closing it here, shielded from the cancellation
    that ended the send, runs every ``finally`` down the chain at once and frees the slot.
    The ``upstream`` stream is closed here as well: closing a generator that never started
    skips its ``finally``, so the slot must not depend on the body having started.

    The send loop is Starlette's minus what an SSE body never needs (str encoding): one
    ``send`` per chunk the body yields, and the body yields whatever arrived at once.
    """

    def __init__(self, body: AsyncGenerator[bytes, None], upstream: UpstreamStream | None = None) -> None:
        super().__init__(body, media_type="text/event-stream", headers=SSE_HEADERS)
        self._body = body
        self._upstream = upstream

    async def stream_response(self, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self._body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()
                if self._upstream is not None:
                    await self._upstream.aclose()


def sse_response(body: AsyncGenerator[bytes, None], upstream: UpstreamStream | None = None) -> SSEResponse:
    return SSEResponse(body, upstream)
