"""The data path to runtimes: one pooled aiohttp session, bytes passed through.

aiohttp rather than httpx here is a measured choice (see bench/): under concurrency a
FastAPI proxy on httpx 0.28's default transport was ~8x slower on these machines. The
session keeps a keep-alive pool per upstream host, so each runtime gets its own pool.

Streams are relayed as the bytes arrive (:class:`SSEBlockReader`), cut only at event boundaries,
rather than split into lines and events and joined again: the router needs to look inside
a stream only for ``[DONE]``, the first token and the usage, and substring searches over a
block find those (bench ``scale``: router CPU per relayed chunk).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from inference_service.runtimes.base import Endpoint


class UpstreamUnreachable(Exception):
    """The runtime could not be reached or dropped the connection."""


@dataclass
class UpstreamReply:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


class UpstreamClient:
    def __init__(self, connect_timeout_s: float = 10.0) -> None:
        self._connect_timeout_s = connect_timeout_s
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
        return headers

    async def post(self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None) -> UpstreamReply:
        """POST JSON and read the whole reply."""
        try:
            async with self.session.post(
                endpoint.base_url + path, data=json.dumps(body).encode(), headers=self._headers(endpoint, request_id)
            ) as response:
                payload = await response.read()
                return UpstreamReply(response.status, payload, response.headers.get("Content-Type", "application/json"))
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamUnreachable(f"{endpoint.base_url}: {error.__class__.__name__}: {error}") from None

    async def open_stream(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> aiohttp.ClientResponse:
        """POST and return the response with its body unread; the caller must ``close()`` it."""
        try:
            return await self.session.post(
                endpoint.base_url + path, data=json.dumps(body).encode(), headers=self._headers(endpoint, request_id)
            )
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamUnreachable(f"{endpoint.base_url}: {error.__class__.__name__}: {error}") from None


class SSEBlockReader:
    """Read an upstream's SSE bytes as they arrive, as runs of *whole* events.

    Each block is one or more complete events, each with its blank-line terminator (CRLF
    framing is normalised to LF); an incomplete event is held back until its end arrives, so
    an error event can never be glued to half an event. Whatever the socket had buffered
    comes out as one block - one ``send`` to the client instead of one per event when the
    router falls behind. A last event the upstream did not terminate is terminated here.
    A reader rather than a generator: one layer less between the socket and the client.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._content = response.content
        self._tail = b""

    async def read(self) -> bytes:
        """The next block; ``StopAsyncIteration`` at the end, ``UpstreamUnreachable`` if the stream broke."""
        while True:
            try:
                data = await self._content.readany()
            except (aiohttp.ClientError, OSError) as error:
                raise UpstreamUnreachable(f"stream interrupted: {error.__class__.__name__}: {error}") from None
            if not data:  # the end of the body
                tail, self._tail = self._tail, b""
                if tail.strip():
                    return tail.rstrip(b"\n") + b"\n\n"
                raise StopAsyncIteration
            if self._tail:
                data = self._tail + data
            if b"\r" in data:
                data = data.replace(b"\r\n", b"\n")
            end = data.rfind(b"\n\n") + 2
            if end < 2:
                self._tail = data
                continue
            self._tail = data[end:]
            return data[:end]


def split_events(block: bytes) -> list[bytes]:
    """The events of a block from :class:`SSEBlockReader`, each without its blank-line terminator."""
    return [event.strip(b"\n") for event in block.split(b"\n\n") if event.strip(b"\n")]
