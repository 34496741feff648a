"""The streaming relay: upstream bytes passed through as whole events, one [DONE], errors in-band.

The upstream is a real HTTP server (raw asyncio, so the test decides where the TCP writes
split the stream) read through the router's aiohttp session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from inference_service.router.sse import DONE, relay
from inference_service.router.upstream import SSEBlockReader, UpstreamClient, split_events
from inference_service.runtimes.base import Endpoint

TOKEN = b'data: {"choices":[{"delta":{"content":" ok"}}]}\n\n'


async def serve_chunks(writes: Sequence[bytes], finish: bool = True) -> tuple[asyncio.Server, str]:
    """An upstream answering any POST with ``writes`` as separate HTTP chunks, 20 ms apart.

    Without ``finish`` it drops the connection instead of ending the chunked body (a crash)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
        await reader.readexactly(length)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        for data in writes:
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()
            await asyncio.sleep(0.02)
        if finish:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


class Stream:
    """What ``Dispatcher.open_stream(blocks=True)`` returns, minus admission: blocks, aclose()."""

    def __init__(self, blocks: AsyncIterator[bytes]) -> None:
        self._blocks = blocks
        self.closed = False

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._blocks)

    async def aclose(self) -> None:
        self.closed = True
        await self._blocks.aclose()  # type: ignore[attr-defined]


async def relayed(writes: Sequence[bytes], finish: bool = True) -> tuple[list[bytes], list[bytes]]:
    """(blocks the upstream reader produced, what the client receives through relay())."""
    server, url = await serve_chunks(writes, finish)
    client = UpstreamClient()
    await client.start()
    try:
        response = await client.open_stream(Endpoint(url, "m"), "/v1/chat/completions", {"stream": True})
        blocks: list[bytes] = []

        async def recorded() -> AsyncIterator[bytes]:
            reader = SSEBlockReader(response)
            while True:
                try:
                    block = await reader.read()
                except StopAsyncIteration:
                    return
                blocks.append(block)
                yield block

        stream = Stream(recorded())
        sent = [chunk async for chunk in relay(stream)]  # type: ignore[arg-type]
        assert stream.closed
        response.close()
        return blocks, sent
    finally:
        await client.close()
        server.close()


async def test_events_split_across_writes_are_relayed_whole() -> None:
    blocks, sent = await relayed([TOKEN[:10], TOKEN[10:] + TOKEN[:5], TOKEN[5:], b"data: [DONE]\n\n"])
    assert blocks == [TOKEN, TOKEN, b"data: [DONE]\n\n"]  # never half an event
    assert b"".join(sent) == TOKEN * 2 + DONE


async def test_crlf_framing_is_normalised() -> None:
    crlf = TOKEN.replace(b"\n", b"\r\n")
    blocks, sent = await relayed([crlf[:-1], crlf[-1:], b"data: [DONE]\r\n\r\n"])
    assert b"".join(sent) == TOKEN + DONE


async def test_the_last_block_and_done_go_out_in_one_send() -> None:
    _, sent = await relayed([TOKEN, TOKEN + b"data: [DONE]\n\n"])
    assert sent == [TOKEN, TOKEN + DONE]


async def test_done_as_text_inside_an_event_does_not_end_the_stream() -> None:
    tricky = b'data: {"choices":[{"delta":{"content":"data: [DONE]"}}]}\n\n'
    _, sent = await relayed([tricky, TOKEN, b"data: [DONE]\n\n"])
    assert b"".join(sent) == tricky + TOKEN + DONE


async def test_a_stream_ending_without_done_gets_an_error_event_then_one_done() -> None:
    _, sent = await relayed([TOKEN, b'data: {"last":true}'])  # the last event not even terminated
    body = b"".join(sent)
    assert body.startswith(TOKEN + b'data: {"last":true}\n\n')
    assert b'"code": "stream_incomplete"' in body and body.endswith(DONE) and body.count(b"[DONE]") == 1


async def test_an_upstream_dying_mid_stream_gets_an_error_event_then_one_done() -> None:
    _, sent = await relayed([TOKEN, TOKEN[:12]], finish=False)
    body = b"".join(sent)
    assert body.startswith(TOKEN) and b'"choi' not in body[len(TOKEN):]  # the half event is never sent
    assert b'"code": "upstream_died"' in body and body.endswith(DONE) and body.count(b"[DONE]") == 1


@pytest.mark.parametrize(
    ("block", "events"),
    [
        (TOKEN + b"data: [DONE]\n\n", [TOKEN[:-2], b"data: [DONE]"]),
        (b": keepalive\n\n\n" + TOKEN, [b": keepalive", TOKEN[:-2]]),
        (b"event: x\ndata: 1\n\n", [b"event: x\ndata: 1"]),
    ],
)
def test_split_events_gives_each_event_without_its_terminator(block: bytes, events: list[bytes]) -> None:
    assert split_events(block) == events
