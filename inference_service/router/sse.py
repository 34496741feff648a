"""Re-streaming Server-Sent Events to the client: framing, one ``[DONE]``, errors as events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from inference_service.router.errors import envelope
from inference_service.router.upstream import UpstreamUnreachable

logger = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    return b"data: " + json.dumps(envelope(message, type, None, code)).encode() + b"\n\n"


async def relay(events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Frame upstream events for the client. Whatever happens upstream, the client sees
    exactly one ``data: [DONE]`` at the end - after an error event if the stream broke."""
    try:
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


def sse_response(body: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)
