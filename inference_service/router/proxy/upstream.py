"""The data path to runtimes: one pooled aiohttp session, bytes passed through.

aiohttp rather than httpx here is a measured choice (see bench/): under concurrency a
FastAPI proxy on httpx 0.28's default transport was ~8x slower on these machines. The
session keeps a keep-alive pool per upstream host, so each runtime gets its own pool.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from inference_service.router.observability import tracing
from inference_service.runtimes.base import Endpoint

logger = logging.getLogger(__name__)


class UpstreamUnreachable(Exception):
    """The runtime could not be reached or dropped the connection."""


class ReplyTooLarge(Exception):
    """The runtime's non-streamed reply is larger than ``max_reply_bytes``; the rest was not read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the reply exceeds {limit:,} bytes (max_reply_bytes)")
        self.limit = limit


@dataclass
class UpstreamReply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


class UpstreamClient:
    def __init__(self, connect_timeout_s: float = 10.0, max_reply_bytes: int = 256 * 2**20) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._max_reply_bytes = max_reply_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # Idle connections are dropped before llama-server's own 5 s keep-alive timeout, so a
        # request never goes out on a socket the server is closing at that very moment.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=4, enable_cleanup_closed=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        return self._session

    @staticmethod
    def _headers(endpoint: Endpoint, request_id: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **endpoint.headers}
        if request_id:
            headers["X-Request-ID"] = request_id
        tracing.inject(headers)  # the call's CLIENT span, current while it is sent
        return headers

    async def _send(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None
    ) -> aiohttp.ClientResponse:
        """POST, and once more if the server dropped the connection before answering.

        llama-server closes a keep-alive connection after a few requests, and the pool can
        hand that connection out at that very moment ("Server disconnected", "Can not write
        request body"). Nothing was answered, so sending again is safe; a server that is
        really gone refuses the second attempt too.
        """
        url, data, headers = endpoint.base_url + path, json.dumps(body), self._headers(endpoint, request_id)
        try:
            return await self.session.post(url, data=data, headers=headers)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
            logger.debug("%s: %s before any answer; sending again", url, error.__class__.__name__)
            return await self.session.post(url, data=data, headers=headers)

    async def post(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> UpstreamReply:
        """POST JSON and read the whole reply; ReplyTooLarge past ``max_reply_bytes``."""
        try:
            async with await self._send(endpoint, path, body, request_id) as response:
                payload = await self._read_capped(response)
                return UpstreamReply(response.status, payload, response.headers.get("Content-Type", "application/json"))
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamUnreachable(f"{endpoint.base_url}: {error.__class__.__name__}: {error}") from None

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, refused as soon as it is known to pass the cap: by its Content-Length, or as it arrives.

        Leaving the body unread closes the connection (it cannot be reused), so the runtime
        stops sending.
        """
        limit = self._max_reply_bytes
        if response.content_length is not None and response.content_length > limit:
            raise ReplyTooLarge(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise ReplyTooLarge(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    async def error_body(self, response: aiohttp.ClientResponse) -> bytes:
        """A streamed call's error answer (a status other than 200), read like a reply: up to
        ``max_reply_bytes``; past that, what it was instead (an error is told in far fewer bytes)."""
        try:
            return await self._read_capped(response)
        except ReplyTooLarge as error:
            return str(error).encode()

    async def open_stream(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> aiohttp.ClientResponse:
        """POST and return the response with its body unread; the caller must ``close()`` it."""
        try:
            return await self._send(endpoint, path, body, request_id)
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamUnreachable(f"{endpoint.base_url}: {error.__class__.__name__}: {error}") from None


#: The longest SSE event accepted from a runtime; beyond it the stream counts as broken (a runtime
#: that never ends an event would otherwise grow the buffer without bound). Chunks with
#: logprobs or tool calls stay far below.
MAX_EVENT_BYTES = 8 * 2**20


async def sse_blocks(reads: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield runs of complete SSE events, each ending with its blank line, as they arrive.

    ``reads``: the body as it is read (``response.content.iter_any()``), passed on as read: a
    run is whatever arrived, cut after its last complete event (the rest waits for the next
    read). Nothing is split into lines or joined again - the relay only looks inside when it
    must (see sse.py). CRLF line ends become LF, so an event always ends with ``\n\n``. An
    event longer than MAX_EVENT_BYTES raises UpstreamUnreachable.
    """
    pending = b""
    try:
        async for data in reads:
            if pending:
                data, pending = pending + data, b""
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            cut = data.rfind(b"\n\n") + 2
            if cut < 2:  # no event complete yet
                if len(data) > MAX_EVENT_BYTES:
                    raise UpstreamUnreachable(f"the runtime sent {len(data):,} bytes without ending an event")
                pending = data
                continue
            if cut < len(data):
                data, pending = data[:cut], data[cut:]
            yield data
    except (aiohttp.ClientError, OSError) as error:
        logger.warning("upstream stream interrupted: %s: %s", error.__class__.__name__, error)
        raise UpstreamUnreachable("the connection closed before the stream was complete") from None
    if pending.strip():
        yield pending.rstrip(b"\n") + b"\n\n"  # a last event without its blank line
