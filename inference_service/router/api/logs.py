"""Log tails: a model runtime's output and the router's own log, as JSON or followed live (SSE).

``?follow=true`` sends the buffered tail first, then every new line as it is written,
one ``data: {"line": ...}`` event each, until the client leaves. Runtime logs come from
the supervisor's ring buffer, which offers snapshots only: new lines are found by
aligning each snapshot with the previous one (see :func:`appended`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Query, Request

from inference_service.router.observability.log_buffer import LogBuffer
from inference_service.router.proxy.stream import EventStream, Feed
from inference_service.router.services import services
from inference_service.router.serving.escaped_json import EscapedJSONResponse
from inference_service.router.serving.inflight import mark_feed
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

POLL_S = 0.25
KEEPALIVE_S = 15.0


def appended(previous: Sequence[str], current: Sequence[str]) -> list[str]:
    """The lines ``current`` has beyond ``previous``, for a ring buffer that appends and drops from the front.

    The longest suffix of ``previous`` that starts ``current`` is what both still hold; the rest
    of ``current`` is new. No overlap at all means a new log (a restarted process): all of it
    is new. A run of identical lines spanning a full buffer is ambiguous; it is read as unchanged.
    """
    for shift in range(len(previous)):
        kept = len(previous) - shift
        if list(current[:kept]) == list(previous[shift:]):
            return list(current[kept:])
    return list(current)


def _line_event(line: str, model: str | None) -> bytes:
    return b"data: " + json.dumps({"model": model, "line": line}).encode() + b"\n\n"


async def _follow(read: Callable[[], list[str]], tail: list[str], model: str | None) -> AsyncGenerator[bytes, None]:
    """The tail, then new lines from ``read`` (polled), with keep-alive comments while quiet."""
    yield b": following\n\n"
    for line in tail:
        yield _line_event(line, model)
    quiet_s = 0.0
    while True:
        await asyncio.sleep(POLL_S)
        lines = read()
        for line in lines:
            yield _line_event(line, model)
        quiet_s = 0.0 if lines else quiet_s + POLL_S
        if quiet_s >= KEEPALIVE_S:
            quiet_s = 0.0
            yield b": keepalive\n\n"


def _model_reader(logs: Callable[[], Sequence[str]], seen: Sequence[str]) -> Callable[[], list[str]]:
    snapshot = list(seen)

    def read() -> list[str]:
        nonlocal snapshot
        current = list(logs())
        new = appended(snapshot, current)
        snapshot = current
        return new

    return read


def _router_reader(buffer: LogBuffer, after: int) -> Callable[[], list[str]]:
    def read() -> list[str]:
        nonlocal after
        lines, after = buffer.since(after)
        return lines

    return read


def _last(lines: Sequence[str], count: int | None) -> list[str]:
    return list(lines) if count is None else list(lines)[max(0, len(lines) - count) :]


# Escaped: a logged line may hold any text, a lone surrogate from a client's request included.
@router.get("/v1/models/{name:path}/logs", response_model=None, response_class=EscapedJSONResponse)
@requires("admin")
async def model_logs(
    name: str,
    request: Request,
    follow: bool = Query(False, description="stream new lines as SSE after the tail"),
    tail: int | None = Query(None, ge=0, description="only the last N buffered lines"),
) -> dict[str, Any] | EventStream:
    svc = services(request)
    model_id = svc.resolver.usable(name)
    buffered = list(svc.supervisor.logs(model_id))
    if not follow:
        return {"id": model_id, "object": "model.logs", "lines": _last(buffered, tail)}
    reader = _model_reader(lambda: svc.supervisor.logs(model_id), buffered)
    mark_feed(request.scope)
    return EventStream(Feed(_follow(reader, _last(buffered, tail), model_id)))


@router.get("/v1/logs", response_model=None, response_class=EscapedJSONResponse)
@requires("admin")
async def router_logs(
    request: Request,
    follow: bool = Query(False, description="stream new lines as SSE after the tail"),
    tail: int | None = Query(None, ge=0, description="only the last N buffered lines"),
) -> dict[str, Any] | EventStream:
    buffer: LogBuffer = request.app.state.log_buffer
    lines, last = buffer.tail(tail)
    if not follow:
        return {"object": "router.logs", "lines": lines}
    mark_feed(request.scope)
    return EventStream(Feed(_follow(_router_reader(buffer, last), lines, None)))
