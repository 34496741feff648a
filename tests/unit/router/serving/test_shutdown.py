"""The shutdown phases on a small ASGI app: what a request gets in each phase."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from inference_service.router.proxy.sse import OPENAI, STREAM_PROTOCOL_SCOPE_KEY, StreamProtocol
from inference_service.router.serving.inflight import FEED_CLOSED, mark_feed
from inference_service.router.serving.shutdown import Phase, Shutdown, ShutdownMiddleware

Sent = list[Message]
#: A long grace, and how long a step that must not wait for it may take on a busy machine.
LONG_GRACE_S = 60.0
WELL_WITHIN_THE_GRACE_S = LONG_GRACE_S / 3


async def receive() -> Message:
    await asyncio.Event().wait()  # the client never sends more: a request only ends by its answer
    raise AssertionError


def streaming_app(events: int, interval_s: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for number in range(events):
            await send({"type": "http.response.body", "body": f"data: {number}\n\n".encode(), "more_body": True})
            await asyncio.sleep(interval_s)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def slow_json_app(scope: Scope, receive: Receive, send: Send) -> None:
    await asyncio.sleep(60)


def start(middleware: ShutdownMiddleware, path: str = "/v1/chat/completions") -> tuple[asyncio.Task[None], Sent]:
    sent: Sent = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "path": path, "method": "POST", "headers": []}
    return asyncio.create_task(middleware(scope, receive, send)), sent


def body(sent: Sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def status(sent: Sent) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


async def test_draining_refuses_new_requests_with_503_shutting_down_but_still_answers_health() -> None:
    shutdown = Shutdown(grace_s=lambda: 5)
    middleware = ShutdownMiddleware(streaming_app(1, 0), shutdown)
    running, _ = start(middleware, "/v1/chat/completions")
    await asyncio.sleep(0)
    stopping = asyncio.create_task(shutdown.drain_and_close())
    await asyncio.sleep(0)
    assert shutdown.phase is Phase.DRAINING
    refused, refused_sent = start(middleware)
    health, health_sent = start(middleware, "/health")
    await asyncio.gather(refused, health, running, stopping)
    assert status(refused_sent) == 503
    assert json.loads(body(refused_sent))["error"]["code"] == "shutting_down"
    assert status(health_sent) == 200


async def test_a_stream_that_ends_within_the_grace_is_served_in_full() -> None:
    shutdown = Shutdown(grace_s=lambda: 5)
    running, sent = start(ShutdownMiddleware(streaming_app(3, 0.01), shutdown))
    await asyncio.sleep(0)
    await shutdown.drain_and_close()
    await running
    assert body(sent) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


async def test_after_the_grace_a_stream_gets_an_error_event_and_done_and_a_waiting_request_a_503() -> None:
    shutdown = Shutdown(grace_s=lambda: 0.1)
    stream, stream_sent = start(ShutdownMiddleware(streaming_app(1000, 0.01), shutdown))
    waiting, waiting_sent = start(ShutdownMiddleware(slow_json_app, shutdown))
    await asyncio.sleep(0.03)
    await shutdown.drain_and_close()
    await asyncio.gather(stream, waiting)
    assert shutdown.phase is Phase.CLOSING
    events = body(stream_sent).split(b"\n\n")
    assert events[0] == b"data: 0" and events[-2:] == [b"data: [DONE]", b""]
    assert json.loads(events[-3].removeprefix(b"data: "))["error"]["code"] == "shutting_down"
    assert not stream_sent[-1]["more_body"]
    assert status(waiting_sent) == 503
    assert json.loads(body(waiting_sent))["error"]["code"] == "shutting_down"


async def test_skipping_the_grace_closes_at_once() -> None:
    shutdown = Shutdown(grace_s=lambda: LONG_GRACE_S)
    waiting, sent = start(ShutdownMiddleware(slow_json_app, shutdown))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(shutdown.drain_and_close())
    await asyncio.sleep(0.05)
    shutdown.skip_grace()
    await asyncio.wait_for(asyncio.gather(stopping, waiting), timeout=WELL_WITHIN_THE_GRACE_S)
    assert status(sent) == 503


async def test_a_second_drain_changes_nothing() -> None:
    shutdown = Shutdown(grace_s=lambda: 0)
    await shutdown.drain_and_close()
    await shutdown.drain_and_close()
    assert shutdown.phase is Phase.CLOSING


def feed_app(scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
    """An endless event feed (as /v1/events): it marks itself and never ends by itself."""
    mark_feed(scope)
    return streaming_app(10**9, 0.01)(scope, receive, send)


async def test_a_feed_ends_when_draining_starts_and_does_not_hold_the_drain_up() -> None:
    shutdown = Shutdown(grace_s=lambda: LONG_GRACE_S)
    feed, feed_sent = start(ShutdownMiddleware(feed_app, shutdown), "/v1/events")
    await asyncio.sleep(0.03)
    await asyncio.wait_for(shutdown.drain_and_close(), timeout=WELL_WITHIN_THE_GRACE_S)
    await feed
    assert body(feed_sent).endswith(FEED_CLOSED) and b"[DONE]" not in body(feed_sent)
    assert not feed_sent[-1]["more_body"]


def gated_app(gate: asyncio.Event) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A stream that sends one event, then its end once ``gate`` is set."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
        await gate.wait()
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})

    return app


async def test_a_feed_ends_at_once_while_a_request_still_drains() -> None:
    shutdown = Shutdown(grace_s=lambda: LONG_GRACE_S)
    gate = asyncio.Event()
    feed, _feed_sent = start(ShutdownMiddleware(feed_app, shutdown), "/v1/events")
    stream, stream_sent = start(ShutdownMiddleware(gated_app(gate), shutdown))
    await asyncio.sleep(0.03)
    stopping = asyncio.create_task(shutdown.drain_and_close())
    await asyncio.wait_for(feed, timeout=WELL_WITHIN_THE_GRACE_S)
    assert not stream.done()  # the request drains on: its end is still to come
    gate.set()
    await asyncio.wait_for(stopping, timeout=WELL_WITHIN_THE_GRACE_S)
    assert body(stream_sent) == b"data: 0\n\ndata: [DONE]\n\n"


async def test_after_the_grace_an_ndjson_stream_ends_with_its_protocols_error_line() -> None:
    """Ollama's streams are NDJSON, not SSE: cut off, they end in their own framing too."""
    ndjson = StreamProtocol(OPENAI.end_of_last, lambda message, code: b'{"error":"' + message.encode() + b'"}\n')

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        )
        scope[STREAM_PROTOCOL_SCOPE_KEY] = ndjson
        while True:
            await send({"type": "http.response.body", "body": b'{"done":false}\n', "more_body": True})
            await asyncio.sleep(0.01)

    shutdown = Shutdown(grace_s=lambda: 0.1)
    stream, sent = start(ShutdownMiddleware(app, shutdown))
    await asyncio.sleep(0.03)
    await shutdown.drain_and_close()
    await stream
    lines = body(sent).splitlines()
    assert lines[0] == b'{"done":false}'
    assert json.loads(lines[-1]) == {"error": "the server shut down while streaming"}
    assert not sent[-1]["more_body"]
