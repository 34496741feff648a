"""Request metrics recorded in one place: the status each way of ending means, a timing for
every request, and the access line of a request cut short after its status line went out."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from inference_service.config import Settings
from inference_service.events import EventBus
from inference_service.router.database import Database
from inference_service.router.observability.activity import ActivityMiddleware
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.observability.metrics import Metrics
from inference_service.router.serving.disconnect import ClientDisconnected
from inference_service.router.serving.errors import APIError

MODEL, ENDPOINT = "a", "chat/completions"

OUTCOMES: dict[str, tuple[str | BaseException, str]] = {
    "answered": ("200", "200"),
    "passed_through_status": ("404", "404"),
    "api_error": (APIError(429, "busy", code="queue_full"), "429"),
    "client_disconnected": (ClientDisconnected(), "499"),
    "starlette_client_disconnect": (ClientDisconnect(), "499"),
    "cancelled": (asyncio.CancelledError(), "499"),
    "unexpected": (ZeroDivisionError("a bug"), "500"),
}


def counted(metrics: Metrics, status: str) -> float | None:
    labels = {"model": MODEL, "endpoint": ENDPOINT, "status": status}
    return metrics.registry.get_sample_value("inference_requests_total", labels)


@pytest.mark.parametrize(("outcome", "status"), OUTCOMES.values(), ids=OUTCOMES.keys())
def test_a_request_is_counted_under_the_status_its_outcome_means(outcome: str | BaseException, status: str) -> None:
    metrics = Metrics()
    metrics.record_request(MODEL, ENDPOINT, time.perf_counter(), outcome)
    assert counted(metrics, status) == 1


def test_every_request_is_timed_however_it_ended() -> None:
    metrics = Metrics()
    for outcome, _ in OUTCOMES.values():
        metrics.record_request(MODEL, ENDPOINT, time.perf_counter(), outcome)
    timed = metrics.registry.get_sample_value(
        "inference_request_duration_seconds_count", {"model": MODEL, "endpoint": ENDPOINT}
    )
    assert timed == len(OUTCOMES)


async def test_a_request_cut_short_after_its_status_line_shows_499_in_its_access_line(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    metrics = Metrics()

    async def stream_whose_client_leaves(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        metrics.record_request(MODEL, ENDPOINT, time.perf_counter(), ClientDisconnected())

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(_: Message) -> None:
        return None

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    with caplog.at_level(logging.INFO, logger="inference_service.access"):
        history = ActivityHistory(Database(tmp_path / "router.db"), metrics.activity_lost, Settings())
        await ActivityMiddleware(stream_whose_client_leaves, EventBus(), history)(scope, receive, send)
    assert [record.getMessage().split()[:3] for record in caplog.records] == [["POST", "/v1/chat/completions", "499"]]
