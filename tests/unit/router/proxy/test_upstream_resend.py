"""A pooled connection the server closes without answering is sent again once, not reported as a dead model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from inference_service.router.proxy.upstream import UpstreamClient, UpstreamUnreachable
from inference_service.runtimes.base import Endpoint
from tests.unit.router.conftest import read_request

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    client = UpstreamClient()
    await client.start()
    yield client
    await client.close()


@asynccontextmanager
async def _dropping(drop_first: int) -> AsyncIterator[tuple[Endpoint, list[int]]]:
    """An HTTP server that reads each request, hangs up on the first ``drop_first`` without a
    word (as llama-server does on a keep-alive connection it is retiring), then answers 200;
    its endpoint, and the requests it has read."""
    seen: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        seen.append(len(seen))
        if len(seen) > drop_first:
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}')
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Endpoint(base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", model_name="m"), seen
    finally:
        server.close()


async def test_a_connection_dropped_before_the_answer_is_sent_again(client: UpstreamClient) -> None:
    async with _dropping(drop_first=1) as (endpoint, seen):
        reply = await client.post(endpoint, "/v1/chat/completions", {"messages": []})
    assert (reply.status, reply.json(), len(seen)) == (200, {"ok": True}, 2)


async def test_a_server_that_keeps_dropping_is_unreachable_after_one_resend(client: UpstreamClient) -> None:
    async with _dropping(drop_first=10) as (endpoint, seen):
        with pytest.raises(UpstreamUnreachable):
            await client.post(endpoint, "/v1/chat/completions", {"messages": []})
    assert len(seen) == 2
