"""A pooled connection the server closes without answering is sent again once, not reported as a dead model."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.router.proxy.upstream import UpstreamClient, UpstreamUnreachable
from inference_service.runtimes.base import Endpoint

pytestmark = pytest.mark.timeout(30)


async def _server(drop_first: int) -> tuple[asyncio.Server, list[int]]:
    """An HTTP server that reads each request, hangs up on the first ``drop_first`` without a
    word (as llama-server does on a keep-alive connection it is retiring), then answers 200."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        await reader.readexactly(length)
        seen.append(len(seen))
        if len(seen) > drop_first:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}')
            await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), seen


async def test_a_connection_dropped_before_the_answer_is_sent_again() -> None:
    server, seen = await _server(drop_first=1)
    client = UpstreamClient()
    await client.start()
    try:
        endpoint = Endpoint(base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", model_name="m")
        reply = await client.post(endpoint, "/v1/chat/completions", {"messages": []})
        assert (reply.status, reply.json(), len(seen)) == (200, {"ok": True}, 2)
    finally:
        await client.close()
        server.close()


async def test_a_server_that_keeps_dropping_is_unreachable_after_one_resend() -> None:
    server, seen = await _server(drop_first=10)
    client = UpstreamClient()
    await client.start()
    try:
        endpoint = Endpoint(base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", model_name="m")
        with pytest.raises(UpstreamUnreachable):
            await client.post(endpoint, "/v1/chat/completions", {"messages": []})
        assert len(seen) == 2
    finally:
        await client.close()
        server.close()
