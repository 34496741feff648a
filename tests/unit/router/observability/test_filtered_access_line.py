"""What a model's request filters changed is on the request's record: the access line names it at
debug level only, the ``request`` event always, merged across the calls of one request."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.types import Message, Receive, Scope, Send

from inference_service.config import Settings
from inference_service.events import REQUEST, Event, EventBus
from inference_service.router.database import Database
from inference_service.router.observability import activity
from inference_service.router.observability.activity import ActivityMiddleware
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.observability.metrics import Metrics


async def filtered_twice(scope: Scope, receive: Receive, send: Send) -> None:
    """A request whose filters fired on two calls to one model and one call to another (an orchestration)."""
    activity.note(model="a", endpoint="chat/completions")
    record = activity.current()
    assert record is not None
    record.add_filtered("a", ["temperature=0.6", "-top_k"])
    record.add_filtered("b", ["max_tokens=8"])
    record.add_filtered("a", ["temperature=0.6", "max_tokens=8"])
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def serve(level: int, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> tuple[str, list[Event]]:
    """One request through the activity middleware: its access line (captured at ``level``) and events."""
    events = EventBus()
    published: list[Event] = []
    events.listen(published.append)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(_: Message) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    with caplog.at_level(level, logger="inference_service.access"):
        history = ActivityHistory(Database(tmp_path / "router.db"), Metrics().activity_lost, Settings())
        await ActivityMiddleware(filtered_twice, events, history)(scope, receive, send)
    (line,) = [record.getMessage() for record in caplog.records]
    return line, [event for event in published if event.type == REQUEST]


async def test_the_debug_access_line_names_the_changes_by_model(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    line, _ = await serve(logging.DEBUG, caplog, tmp_path)
    assert line.endswith(" filtered=a:temperature=0.6,-top_k,max_tokens=8 filtered=b:max_tokens=8")


async def test_the_info_access_line_leaves_them_out(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    line, _ = await serve(logging.INFO, caplog, tmp_path)
    assert "filtered" not in line


async def test_the_request_event_carries_them_at_any_level(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    _, (event,) = await serve(logging.INFO, caplog, tmp_path)
    assert event.data["filtered"] == {"a": ["temperature=0.6", "-top_k", "max_tokens=8"], "b": ["max_tokens=8"]}
