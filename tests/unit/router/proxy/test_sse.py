"""SSEResponse gives up on a client that accepts nothing for send_timeout_s and closes the body
(the upstream request); the integration test tests/integration/router/proxy/test_slow_readers.py
shows the effect on a real router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from starlette.types import Message

from inference_service.router.proxy.sse import SSEResponse


async def test_a_send_blocked_past_the_timeout_cancels_the_stream() -> None:
    closed = asyncio.Event()
    timeouts: list[bool] = []

    async def body() -> AsyncGenerator[bytes, None]:
        try:
            while True:
                yield b"data: {}\n\n"
        finally:
            closed.set()

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)
        if len(sent) > 3:  # the client's buffers are full: this send never completes
            await asyncio.Event().wait()

    response = SSEResponse(body(), send_timeout_s=0.2, on_send_timeout=lambda: timeouts.append(True))
    await asyncio.wait_for(response.stream_response(send), timeout=5)
    assert timeouts == [True]
    assert closed.is_set()


async def test_a_reading_client_is_never_timed_out() -> None:
    async def body() -> AsyncGenerator[bytes, None]:
        for _ in range(5):
            await asyncio.sleep(0.05)  # slower than the timeout overall, never per send
            yield b"data: {}\n\n"

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    response = SSEResponse(body(), send_timeout_s=0.1, on_send_timeout=lambda: sent.append({"type": "timeout"}))
    await response.stream_response(send)
    assert {"type": "timeout"} not in sent
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
