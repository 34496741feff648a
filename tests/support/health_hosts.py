"""Many upstream hosts in the calling process, each counting the requests it gets.

The benchmark's many-models scenario and the prober's tests need hosts whose only job is to
answer health probes - and to tell how many probes each one received, which is the point
(models on one host share its health: one probe per host per interval, not one per model).
A raw asyncio HTTP/1.1 server per port is far cheaper than a uvicorn process per host and
keeps the counters in reach. ``status[i]`` is what host ``i`` answers (200 until changed).
"""

from __future__ import annotations

import asyncio
import contextlib

_BODY = b'{"status":"ok"}'


class HealthHosts:
    """``count`` HTTP/1.1 servers on free 127.0.0.1 ports answering every request with ``status[i]``."""

    def __init__(self, count: int) -> None:
        self._count = count
        self._servers: list[asyncio.Server] = []
        self.requests: list[int] = [0] * count
        self.status: list[int] = [200] * count

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}" for server in self._servers]

    def reset(self) -> None:
        self.requests = [0] * self._count

    async def __aenter__(self) -> HealthHosts:
        for index in range(self._count):
            self._servers.append(await asyncio.start_server(self._handler(index), "127.0.0.1", 0))
        return self

    async def __aexit__(self, *_: object) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    def _handler(self, index: int):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            """Keep-alive: one response per request head (probes are bodiless GETs)."""
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    self.requests[index] += 1
                    head = f"HTTP/1.1 {self.status[index]} X\r\nContent-Type: application/json\r\nContent-Length: {len(_BODY)}\r\n\r\n"
                    writer.write(head.encode() + _BODY)
                    await writer.drain()
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                pass
            finally:
                writer.close()

        return handle
