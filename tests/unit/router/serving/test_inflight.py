"""The registry of requests in flight on small ASGI apps: cancelling one by id, what its client
gets, and that no way of ending a request leaves its entry behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.config import Settings
from inference_service.events import EventBus
from inference_service.router.database import Database
from inference_service.router.observability import activity
from inference_service.router.observability.activity import ActivityMiddleware
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.observability.metrics import Metrics
from inference_service.router.serving.inflight import InFlight
from inference_service.router.serving.middleware import request_id_var
from tests.support.configs import eventually

Sent = list[Message]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


async def receive() -> Message:
    await asyncio.Event().wait()  # the client never sends more: a request only ends by its answer
    raise AssertionError


def inference(app: App) -> App:
    """``app`` as an inference route: it names its endpoint, as the proxied routes do."""

    async def noted(scope: Scope, receive: Receive, send: Send) -> None:
        activity.note(model="m", endpoint="chat/completions")
        await app(scope, receive, send)

    return noted


async def waiting(scope: Scope, receive: Receive, send: Send) -> None:
    """A request whose answer never comes by itself: queued, or generating a long answer."""
    await asyncio.Event().wait()


async def streaming(scope: Scope, receive: Receive, send: Send) -> None:
    """A stream that sends one event, then waits for more forever."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
    await asyncio.Event().wait()


async def answering(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def failing(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a bug")


Start = Callable[[InFlight, App, str], tuple[asyncio.Task[None], Sent]]


@pytest.fixture
def start(tmp_path: Path) -> Start:
    """Run an app as one request with a request id, under a registry and an activity record."""
    history = ActivityHistory(Database(tmp_path / "router.db"), Metrics().activity_lost, Settings())
    return lambda registry, app, request_id: _start(registry, app, request_id, history)


def _start(registry: InFlight, app: App, request_id: str, history: ActivityHistory) -> tuple[asyncio.Task[None], Sent]:
    sent: Sent = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def registered(scope: Scope, receive: Receive, send: Send) -> None:
        await registry.run(app, scope, receive, send)

    outer: ASGIApp = ActivityMiddleware(registered, EventBus(), history)

    async def request() -> None:
        request_id_var.set(request_id)
        scope: dict[str, Any] = {"type": "http", "path": "/v1/chat/completions", "method": "POST", "headers": []}
        await outer(scope, receive, send)

    return asyncio.create_task(request()), sent


def body(sent: Sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def status(sent: Sent) -> int:
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


async def test_a_cancelled_request_not_answered_yet_gets_a_499_request_cancelled_envelope(start: Start) -> None:
    registry = InFlight()
    task, sent = start(registry, inference(waiting), "r-1")
    await eventually(lambda: len(registry) == 1)

    assert registry.cancel("r-1") == 1
    await task

    assert status(sent) == 499
    error = json.loads(body(sent))["error"]
    assert (error["type"], error["code"]) == ("request_cancelled", "request_cancelled")


async def test_a_cancelled_stream_ends_with_a_request_cancelled_event_and_done(start: Start) -> None:
    registry = InFlight()
    task, sent = start(registry, inference(streaming), "r-1")
    await eventually(lambda: b"data: 0" in body(sent))

    registry.cancel("r-1")
    await task

    events = body(sent).split(b"\n\n")
    assert events[0] == b"data: 0" and events[-2:] == [b"data: [DONE]", b""]
    assert json.loads(events[-3].removeprefix(b"data: "))["error"]["code"] == "request_cancelled"
    assert not sent[-1]["more_body"]


async def test_cancelling_again_while_it_is_being_cancelled_counts_it_and_answers_it_once(start: Start) -> None:
    registry = InFlight()
    task, sent = start(registry, inference(waiting), "r-1")
    await eventually(lambda: len(registry) == 1)

    assert [registry.cancel("r-1"), registry.cancel("r-1")] == [1, 1]  # the second before its task ran again
    await task

    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]


async def test_cancel_cuts_off_only_the_request_with_that_id(start: Start) -> None:
    registry = InFlight()
    cancelled, _ = start(registry, inference(waiting), "r-1")
    other, other_sent = start(registry, inference(waiting), "r-2")
    await eventually(lambda: len(registry) == 2)

    registry.cancel("r-1")
    await cancelled

    assert not other.done() and not other_sent
    assert [request.request_id for request in registry.inference()] == ["r-2"]
    other.cancel()


async def test_an_unknown_id_or_a_request_that_is_not_inference_is_not_cancelled(start: Start) -> None:
    registry = InFlight()
    not_inference, _ = start(registry, waiting, "r-1")  # a feed, a model load: no endpoint noted
    await eventually(lambda: len(registry) == 1)

    assert registry.cancel("r-1") == 0
    assert registry.cancel("no-such-request") == 0
    assert not not_inference.done()
    not_inference.cancel()


async def test_a_finished_request_is_no_longer_cancellable(start: Start) -> None:
    registry = InFlight()
    task, _ = start(registry, inference(answering), "r-1")
    await task

    assert registry.cancel("r-1") == 0


@pytest.mark.parametrize(
    "app, end",
    [
        (answering, "answered"),
        (failing, "raised"),
        (waiting, "cancelled"),
        (streaming, "cancelled"),
        (waiting, "task cancelled"),
    ],
    ids=["answered", "raised", "cancelled-waiting", "cancelled-streaming", "server-cancelled"],
)
async def test_no_way_a_request_ends_leaves_its_entry_behind(start: Start, app: App, end: str) -> None:
    registry = InFlight()
    task, _ = start(registry, inference(app), "r-1")
    await eventually(lambda: len(registry) == 1 or task.done())
    if end == "cancelled":
        registry.cancel("r-1")
    elif end == "task cancelled":  # the server's own cancellation (a lost connection, its shutdown)
        task.cancel()

    await asyncio.gather(task, return_exceptions=True)

    assert len(registry) == 0 and not registry.inference()
