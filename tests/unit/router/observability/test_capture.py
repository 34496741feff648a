"""What the activity middleware captures: nothing - not even a wrapper around the request's body -
while no model or key is captured; the bodies of a captured model's or key's requests, each cut at
``capture_max_bytes``, once some are."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from inference_service.config import Settings
from inference_service.events import REQUEST as REQUEST_EVENT
from inference_service.events import EventBus
from inference_service.router.database import Database
from inference_service.router.observability import activity
from inference_service.router.observability.activity import ActivityMiddleware
from inference_service.router.observability.history import (
    MAX_PENDING,
    MAX_PENDING_CAPTURE_BYTES,
    ActivityHistory,
    Capture,
    Query,
)
from inference_service.router.observability.metrics import Metrics
from tests.unit.router.observability.test_history import summary

REMOTE = {"runtime": "remote", "url": "http://127.0.0.1:9"}
REQUEST = b'{"model": "m", "messages": [{"role": "user", "content": "a secret prompt"}]}'
CHUNKS = [b"data: first\n\n", b"data: second\n\n", b"data: [DONE]\n\n"]


@contextlib.asynccontextmanager
async def history_on(path: Path, **config: Any) -> AsyncIterator[ActivityHistory]:
    database = Database(path)
    history = ActivityHistory(database, Metrics().activity_lost, Settings(**config), flush_interval_s=3600)
    try:
        yield history
    finally:
        await history.close()
        await database.close()


async def serve(
    history: ActivityHistory, model: str, key: str | None = None, events: EventBus | None = None
) -> list[Receive]:
    """One streamed chat request for ``model`` through the middleware (its ``request`` event on
    ``events``); the ``receive`` the app was given."""
    given: list[Receive] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        given.append(receive)
        await receive()
        activity.note(model=model, endpoint="chat/completions", key=key)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> Message:
        return {"type": "http.request", "body": REQUEST, "more_body": False}

    async def send(_: Message) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await ActivityMiddleware(app, events or EventBus(), history)(scope, receive, send)
    given.append(receive)
    return given


async def test_with_capture_off_the_app_reads_the_servers_own_receive_and_nothing_is_kept(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db", models={"m": REMOTE}) as history:
        app_receive, server_receive = await serve(history, "m")
        assert app_receive is server_receive
        assert [record["captured"] for record in (await history.query(Query())).records] == [False]


async def test_a_captured_models_bodies_are_kept_up_to_the_limit(tmp_path: Path) -> None:
    models = {"m": {**REMOTE, "capture": True}, "other": REMOTE}
    async with history_on(tmp_path / "router.db", models=models, capture_max_bytes=20) as history:
        await serve(history, "m")
        await serve(history, "other")
        captured, plain = reversed((await history.query(Query())).records)
        assert (captured["model"], captured["captured"], plain["captured"]) == ("m", True, False)
        kept = await history.capture(captured["id"])
    assert kept == {
        "request": {"body": REQUEST[:20].decode(), "bytes": len(REQUEST), "truncated": True},
        "response": {"body": b"".join(CHUNKS)[:20].decode(), "bytes": len(b"".join(CHUNKS)), "truncated": True},
    }


async def test_a_captured_keys_requests_are_kept_on_any_model(tmp_path: Path) -> None:
    keys = {"k": {"key": "secret", "scopes": ["inference"], "capture": True}}
    async with history_on(tmp_path / "router.db", models={"m": REMOTE}, keys=keys) as history:
        await serve(history, "m", key="k")
        await serve(history, "m", key=None)
        assert [record["captured"] for record in (await history.query(Query())).records] == [False, True]


async def request_event(history: ActivityHistory, model: str) -> dict[str, Any]:
    """The ``request`` event of one request served through the middleware: its data."""
    events = EventBus()
    subscription = events.subscribe(types=[REQUEST_EVENT])
    await serve(history, model, events=events)
    event, _ = await subscription.next()
    return event.data


async def test_the_request_event_claims_no_capture_the_history_dropped(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db", models={"m": {**REMOTE, "capture": True}}) as history:
        pending = Capture(limit=MAX_PENDING_CAPTURE_BYTES)  # the pending captures' bound, already reached
        pending.request.add(b"x" * MAX_PENDING_CAPTURE_BYTES)
        history.add(summary(), 1_800_000_000.0, pending)

        event = await request_event(history, "m")

    assert event["activity_id"] is not None and event["captured"] is False


async def test_the_request_event_names_no_record_the_history_dropped(tmp_path: Path) -> None:
    async with history_on(tmp_path / "router.db", models={"m": {**REMOTE, "capture": True}}) as history:
        for _ in range(MAX_PENDING):  # the pending records' bound, reached before a write
            history.add(summary(), 1_800_000_000.0, None)

        event = await request_event(history, "m")

    assert (event["activity_id"], event["captured"]) == (None, False)
