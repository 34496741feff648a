"""An upstream that answers instantly, to measure the router's own cost (pure proxy capacity).

A raw ASGI app rather than FastAPI/Starlette: the point is for the upstream to be far
cheaper than the router, so the router is what saturates. Run it with
``uvicorn bench.upstream:app --lifespan off``. It answers ``GET /health`` with 200 (so the router's
remote runtime considers it healthy) and ``POST /v1/chat/completions`` with a fixed
``chat.completion``, or - with ``"stream": true`` - with ``max_tokens`` SSE chunks of one
token each (default :data:`DEFAULT_CHUNKS`), shaped like llama-server's, then ``[DONE]``.

A body field ``"drip_ms": N`` (passed through by the router like any unknown field) turns
the stream into a *drip*: N ms between chunks, like a GPU host decoding at 1000/N tokens/s
per stream - the scale scenario's upstream.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.types import Receive, Scope, Send

DEFAULT_CHUNKS = 16

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "instant",
        "choices": [
            {
                "index": 0,
                "finish_reason": "length",
                "message": {"role": "assistant", "content": "ok ok ok ok ok ok ok ok"},
            }
        ],
        "usage": {"prompt_tokens": 16, "completion_tokens": 8, "total_tokens": 24},
    }
).encode()
_TOKEN_CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"instant",'
    b'"choices":[{"index":0,"finish_reason":null,"delta":{"content":" ok"}}]}\n\n'
)
_LAST_CHUNK = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"instant",'
    b'"choices":[{"index":0,"finish_reason":"length","delta":{}}]}\n\ndata: [DONE]\n\n'
)
_HEALTH = b'{"status":"ok"}'


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"application/json") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_json(receive: Receive) -> dict[str, Any]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


async def _stream(send: Send, chunks: int, gap_s: float) -> None:
    """One body message per token, like a real runtime streaming as it decodes (``gap_s`` apart)."""
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for number in range(chunks):
        if gap_s and number:
            await asyncio.sleep(gap_s)
        await send({"type": "http.response.body", "body": _TOKEN_CHUNK, "more_body": True})
    if gap_s:
        await asyncio.sleep(gap_s)
    await send({"type": "http.response.body", "body": _LAST_CHUNK})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":  # run with --lifespan off: nothing to set up
        return
    if scope["path"] == "/health":
        await _respond(send, 200, _HEALTH)
    elif scope["method"] == "POST" and scope["path"] in ("/v1/chat/completions", "/v1/completions"):
        body = await _read_json(receive)
        if body.get("stream"):
            await _stream(send, int(body.get("max_tokens") or DEFAULT_CHUNKS), float(body.get("drip_ms") or 0) / 1000)
        else:
            await _respond(send, 200, _COMPLETION)
    else:
        await _respond(send, 404, b'{"error":{"message":"not found","type":"not_found_error"}}')
