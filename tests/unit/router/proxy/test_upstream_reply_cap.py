"""A non-streamed reply beyond ``max_reply_bytes`` is refused, whether its size is declared or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from inference_service.router.proxy.upstream import ReplyTooLarge, UpstreamClient
from inference_service.runtimes.base import Endpoint
from tests.unit.router.conftest import read_request

pytestmark = pytest.mark.timeout(30)

LIMIT = 64 * 1024
PIECE = b"x" * 8192


@asynccontextmanager
async def replying(size: int, chunked: bool, status: bytes = b"200 OK") -> AsyncIterator[Endpoint]:
    """A server answering every request ``status`` with ``size`` bytes, with a Content-Length or chunked (size unknown).

    A chunked answer keeps coming as long as the client reads: the client must stop on its own.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        try:
            if chunked:
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" % status
                )
                for _ in range(size // len(PIECE)):
                    writer.write(b"%x\r\n%s\r\n" % (len(PIECE), PIECE))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(
                    b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (status, size)
                )
                writer.write(b"x" * size)
            await writer.drain()
        except ConnectionError:
            pass  # the client stopped reading and closed: that is the point
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Endpoint(base_url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", model_name="m")
    finally:
        server.close()


async def _post(endpoint: Endpoint) -> bytes:
    client = UpstreamClient(max_reply_bytes=LIMIT)
    await client.start()
    try:
        return (await client.post(endpoint, "/v1/chat/completions", {"messages": []})).body
    finally:
        await client.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_reply_beyond_the_cap_is_refused(chunked: bool) -> None:
    async with replying(100 * LIMIT, chunked) as endpoint:
        with pytest.raises(ReplyTooLarge):
            await _post(endpoint)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_reply_at_the_cap_is_read_whole(chunked: bool) -> None:
    async with replying(LIMIT, chunked) as endpoint:
        assert await _post(endpoint) == b"x" * LIMIT
