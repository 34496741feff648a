"""The floor: the least a Python relay on the router's stack does, for the bench to compare with.

A raw ASGI app under uvicorn (uvloop + httptools, one worker, like the router) that reads
the request body, POSTs it to ``BARE_RELAY_UPSTREAM`` with aiohttp (one pooled session,
like the router's data path) and passes the answer's bytes on as they are read. No
validation, admission, metrics, logging, error envelope or disconnect handling: whatever
the router costs beyond this is the price of what it does; what this costs no Python relay
on uvicorn and aiohttp gets under on the same machine.

Run it with ``BARE_RELAY_UPSTREAM=http://... uvicorn bench.bare_relay:app --lifespan off``.
"""

from __future__ import annotations

import os

import aiohttp
from starlette.types import Receive, Scope, Send

_UPSTREAM = os.environ.get("BARE_RELAY_UPSTREAM", "")
_session: aiohttp.ClientSession | None = None


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    global _session
    if scope["type"] != "http":
        return
    if _session is None:
        _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    body = await _body(receive)
    async with _session.post(
        _UPSTREAM + scope["path"], data=body, headers={"Content-Type": "application/json"}
    ) as response:
        content_type = response.headers.get("Content-Type", "application/json").encode()
        await send(
            {"type": "http.response.start", "status": response.status, "headers": [(b"content-type", content_type)]}
        )
        async for data in response.content.iter_any():
            await send({"type": "http.response.body", "body": data, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
