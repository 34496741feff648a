"""Traces: OpenTelemetry spans for each request, exported over OTLP/HTTP - off unless configured.

This package owns tracing. :func:`start` sets the SDK up from ``[tracing]`` and the
``OTEL_*`` variables (settings.py, sdk.py); its middleware opens a SERVER span per request
(middleware.py). The pipeline reports to it at a few seams, through the functions below:

- ``forward``/``orchestrate``: :func:`note_request` (what the client asked for);
- the dispatcher: :func:`admission` (the wait for a slot), :func:`model_loads` (the wait for a
  model to load) and :func:`upstream_call` (the CLIENT span of the call itself);
- the upstream client: :func:`inject` (``traceparent`` for the upstream);
- the orchestration runner: :func:`stage`;
- the metrics: :func:`exemplar` (the trace of an observation).

Off - no endpoint configured, or outside a traced request - each is one context-variable
read returning a do-nothing handle; nothing of OpenTelemetry is imported for them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry

from inference_service.config import TracingConfig
from inference_service.events import EventBus

if TYPE_CHECKING:
    from inference_service.router.observability.tracing.sdk import Tracing
    from inference_service.router.observability.tracing.spans import RequestTrace
    from inference_service.runtimes.base import Endpoint
    from inference_service.supervisor import Supervisor

#: The trace of the request being served (set by the middleware); tasks the request spawns inherit it.
CURRENT: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("request_trace", default=None)
_NOTHING = contextlib.nullcontext()


class SpanHandle(Protocol):
    """A span opened at a seam (see spans.Traced), or nothing when the request is not traced."""

    def __enter__(self) -> SpanHandle: ...
    def __exit__(self, *exc_info: Any) -> None: ...
    def current(self) -> AbstractContextManager[object]: ...
    def record(self, error: BaseException) -> None: ...
    def end(self) -> None: ...


class CallHandle(SpanHandle, Protocol):
    """An upstream call's CLIENT span (see spans.TracedCall)."""

    def replied(self, status: int, body: bytes | None = None) -> None: ...
    def observe(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]: ...


class _Untraced:
    """Every handle of an untraced request: does nothing, and passes a stream on untouched."""

    def __enter__(self) -> _Untraced:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        return None

    def current(self) -> AbstractContextManager[object]:
        return _NOTHING

    def record(self, error: BaseException) -> None:
        pass

    def end(self) -> None:
        pass

    def replied(self, status: int, body: bytes | None = None) -> None:
        pass

    def observe(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        return blocks


UNTRACED = _Untraced()


def start(config: TracingConfig, events: EventBus, registry: CollectorRegistry) -> Tracing | None:
    """The SDK set up from ``config`` and the environment, or None when tracing is off.

    Raises ConfigError for a bad ``OTEL_*`` value (or key). The SDK is imported only here.
    """
    from inference_service.router.observability.tracing.settings import resolve

    settings = resolve(config)
    if settings is None:
        return None
    from inference_service.router.observability.tracing.sdk import Tracing

    return Tracing(settings, events, registry)


def note_request(body: Mapping[str, Any]) -> None:
    """The request's model and sampling parameters, on its SERVER span."""
    if (request := CURRENT.get()) is not None:
        request.note_request(body)


def admission(model_id: str, priority: int, position: int) -> SpanHandle:
    """The wait for an admission slot; ``position``: requests already waiting for the model's slots."""
    if (request := CURRENT.get()) is None:
        return UNTRACED
    return request.internal(
        f"admission {model_id}",
        {"gen_ai.request.model": model_id, "inference.priority": priority, "inference.queue.position": position},
    )


def model_loads(supervisor: Supervisor, model_ids: Sequence[str]) -> AbstractContextManager[None]:
    """A load span per model of ``model_ids`` not loaded yet, while the block waits for them."""
    if (request := CURRENT.get()) is None:
        return _NOTHING
    return request.loads.loading(request.tracer, supervisor, model_ids)


def stage(role: str, model_id: str, round: int) -> SpanHandle:
    """One orchestration stage; ``round``: the how-manieth call of this role on this model."""
    if (request := CURRENT.get()) is None:
        return UNTRACED
    return request.internal(
        f"{role} {model_id}",
        {"inference.stage.role": role, "inference.stage.model": model_id, "inference.stage.round": round},
    )


def upstream_call(
    model_id: str, runtime: str, endpoint: Endpoint, path: str, body: Mapping[str, Any], filtered: Sequence[str] = ()
) -> CallHandle:
    """The CLIENT span of one call to a model's runtime (``with`` it around the call, or :meth:`end` it);
    ``body`` as it goes upstream, ``filtered``: what the model's request filters changed in it."""
    if (request := CURRENT.get()) is None:
        return UNTRACED
    return request.upstream_call(model_id, runtime, endpoint, path, body, filtered)


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to an upstream request's headers."""
    if (request := CURRENT.get()) is not None:
        request.inject(headers)


def exemplar() -> dict[str, str] | None:
    """The trace id of the request being served, for a Prometheus exemplar (None: untraced, unsampled)."""
    request = CURRENT.get()
    return request.exemplar if request is not None else None
