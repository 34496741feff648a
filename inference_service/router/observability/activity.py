"""Request activity: one record per HTTP request, an access log line and a ``request`` event.

The outermost middleware opens an :class:`Activity` for every request and, once the last
byte of the response has gone out (streams included), logs one access line and - for
inference requests - keeps the record in the activity history (with the request's bodies when
its model or key is captured, :mod:`.history`) and publishes a ``request`` event on the bus.
Code deeper down that learns something about the request (the model it resolved to, the
first token, token usage, the orchestration mode) adds it with :func:`note`; it never needs
to know who listens. The record travels in a context variable holding a mutable object, so tasks
spawned for the request (parallel orchestration stages, the response stream) fill in
the same record.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.events import REQUEST, EventBus
from inference_service.router.observability.history import ActivityHistory, Capture

access_logger = logging.getLogger("inference_service.access")


@dataclass
class Activity:
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    request_id: str = "-"
    key: str | None = None  # the name of the key it came with (never the secret)
    trace_id: str | None = None  # set when the request is traced (tracing/middleware.py)
    status: int | None = None
    model: str | None = None
    endpoint: str | None = None  # set for inference requests only: "chat/completions", ...
    mode: str | None = None  # orchestration mode, when there is one
    orchestration: dict[str, Any] | None = None
    first_token_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    resumes: int | None = None  # times its runtime died mid-answer and it was continued (proxy/resume/)
    #: Calls admitted to a model for it (the usage ledger counts each): none, and its key's limits give back
    #: the tokens its body was estimated at - a 404, a 400, a 403 or a client gone while queued cost nothing.
    model_calls: int = 0
    #: What each model's request filters changed (router/proxy/filters.py), by model: one entry per change.
    filtered: dict[str, list[str]] | None = None

    def add_filtered(self, model_id: str, changes: list[str]) -> None:
        """Filters note each call: an orchestration calls several models, a model several times."""
        noted = (self.filtered or {}).get(model_id, [])
        self.filtered = {**(self.filtered or {}), model_id: list(dict.fromkeys([*noted, *changes]))}

    def add_usage(self, prompt: int | None, completion: int | None) -> None:
        """Usage adds up: an orchestrated request reports one usage per stage."""
        if prompt is not None:
            self.prompt_tokens = (self.prompt_tokens or 0) + prompt
        if completion is not None:
            self.completion_tokens = (self.completion_tokens or 0) + completion

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def summary(self, finished: float) -> dict[str, Any]:
        """The fields of the access log line and of the ``request`` event."""
        duration_s = finished - self.started
        ttft_s = self.first_token_at - self.started if self.first_token_at is not None else None
        generating_s = finished - (self.first_token_at or self.started)
        tokens_per_s = (
            round(self.completion_tokens / generating_s, 1) if self.completion_tokens and generating_s > 0 else None
        )
        return {
            "request_id": self.request_id,
            "key": self.key,
            "trace_id": self.trace_id,
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "model": self.model,
            "status": self.status,
            "duration_ms": round(duration_s * 1000, 1),
            "ttft_ms": round(ttft_s * 1000, 1) if ttft_s is not None else None,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_s": tokens_per_s,
            "mode": self.mode,
            "orchestration": self.orchestration,
            "resumes": self.resumes,
            "filtered": self.filtered,
        }


_current: contextvars.ContextVar[Activity | None] = contextvars.ContextVar("activity", default=None)


def current() -> Activity | None:
    """The record of the request being served, if any (None outside a request: tests, start-up)."""
    return _current.get()


def note(**fields: Any) -> None:
    """Add what is known about the current request; a no-op outside a request."""
    activity = _current.get()
    if activity is not None:
        for name, value in fields.items():
            setattr(activity, name, value)


def _access_line(summary: dict[str, Any]) -> str:
    parts = [f"{summary['method']} {summary['path']} {summary['status']} {summary['duration_ms']:.1f}ms"]
    for key in ("key", "model", "mode", "ttft_ms", "prompt_tokens", "completion_tokens", "resumes", "trace_id"):
        if summary[key] is not None:
            parts.append(f"{key}={summary[key]}")
    if summary["filtered"] and access_logger.isEnabledFor(logging.DEBUG):  # which rules fired: for debugging
        parts += [f"filtered={model}:{','.join(changes)}" for model, changes in summary["filtered"].items()]
    return " ".join(parts)


class ActivityMiddleware:
    """Outermost pure ASGI middleware: times each request to its last byte, then logs and publishes it.

    Outermost so that refusals by the inner middleware (401, 413) are logged too; the
    request id is read from the ``X-Request-ID`` header the inner middleware echoes.
    """

    def __init__(self, app: ASGIApp, events: EventBus, history: ActivityHistory) -> None:
        self.app = app
        self._events = events
        self._history = history

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        activity = Activity(method=scope["method"], path=scope["path"])
        token = _current.set(activity)
        # Whose model or key is captured is known only later: while any is, every body is kept (bounded).
        capture = Capture(self._history.capture_max_bytes) if self._history.capturing else None
        if capture is not None:
            receive = capture.receiving(receive)

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                activity.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-request-id":  # ahead of a limited key's x-ratelimit-* headers
                        activity.request_id = value.decode(errors="replace")
                        break
            elif capture is not None and message["type"] == "http.response.body":
                capture.response.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        except BaseException:
            if activity.status is None:
                activity.status = 500
            raise
        finally:
            _current.reset(token)
            self._finish(activity, capture)

    def _finish(self, activity: Activity, capture: Capture | None) -> None:
        summary = activity.summary(time.perf_counter())
        access_logger.info(_access_line(summary), extra={"access": summary, "request_id": activity.request_id})
        if activity.endpoint is not None:
            if capture is not None and not self._history.wants_capture(activity.model, activity.key):
                capture = None
            kept = self._history.add(summary, time.time(), capture)
            fields = {key: value for key, value in summary.items() if key != "model"}  # the event's own field
            self._events.publish(REQUEST, activity.model, activity_id=kept.record_id, captured=kept.captured, **fields)
