"""The SERVER span: one per HTTP request, from its first byte to its last (a stream's included).

Added only when tracing is on, just inside :class:`ActivityMiddleware`: the request's
activity record is there to take the trace id (for the access line) and, at the end, to
give what the pipeline noted (model, endpoint, tokens, the first token's time, the status),
so nothing on the data path reports to tracing twice. A caller's W3C ``traceparent`` is
continued, and the response carries the SERVER span's own.
"""

from __future__ import annotations

import time

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_service.router.observability import activity
from inference_service.router.observability.activity import Activity
from inference_service.router.observability.tracing import CURRENT, attributes
from inference_service.router.observability.tracing.spans import PROPAGATOR, LoadWatch, RequestTrace

#: Probes and scrapes: a span each would bury the requests worth looking at.
UNTRACED_PATHS = frozenset({"/health", "/health/ready", "/metrics"})
_CONTEXT_HEADERS = (b"traceparent", b"tracestate")
SERVED_MODEL_HEADER = b"x-inference-model"


class TracingMiddleware:
    """Pure ASGI middleware opening each request's SERVER span and closing it with what the request did."""

    def __init__(self, app: ASGIApp, tracer: trace.Tracer, loads: LoadWatch, capture_content: bool) -> None:
        self.app = app
        self._tracer = tracer
        self._loads = loads
        self._capture_content = capture_content

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode(): value.decode("latin-1") for name, value in scope["headers"] if name in _CONTEXT_HEADERS
        }
        started, started_ns = time.perf_counter(), time.time_ns()
        span = self._tracer.start_span(
            scope["method"],
            context=PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            start_time=started_ns,
            attributes={
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        request = RequestTrace(self._tracer, span, self._capture_content, self._loads)
        record = activity.current()
        if record is not None:
            record.trace_id = request.trace_id
        outgoing: dict[str, str] = {}
        PROPAGATOR.inject(outgoing, context=trace.set_span_in_context(span))
        context_headers = [(name.encode(), value.encode()) for name, value in outgoing.items()]
        served: list[str] = []

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                served.extend(value.decode() for name, value in headers if name == SERVED_MODEL_HEADER)
                message["headers"] = [*headers, *context_headers]
            await send(message)

        token = CURRENT.set(request)
        try:
            with trace.use_span(span):
                await self.app(scope, receive, send_traced)
        finally:
            CURRENT.reset(token)
            _finish(request, record, scope, served[0] if served else None, started, started_ns)


def _finish(
    request: RequestTrace, record: Activity | None, scope: Scope, served: str | None, started: float, started_ns: int
) -> None:
    """Name the span for what the request turned out to be, add what it did, and end it."""
    span = request.span
    status = record.status if record is not None and record.status is not None else 500  # None: it raised
    span.set_attribute("http.response.status_code", status)
    if record is not None and record.request_id != "-":
        span.set_attribute("inference.request_id", record.request_id)
    if record is not None and record.endpoint is not None:
        operation = attributes.operation(record.endpoint)
        model = request.request_model or record.model or "unknown"
        span.update_name(f"{operation} {model}")
        span.set_attributes(
            {
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": model,
                "gen_ai.response.model": served or record.model or model,
                **attributes.usage_attributes(
                    {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens}
                ),
            }
        )
        if record.mode is not None:
            span.set_attribute("inference.orchestration.mode", record.mode)
        if request.finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", request.finish_reasons)
        if record.first_token_at is not None:
            ttft_s = record.first_token_at - started
            span.set_attribute("gen_ai.response.time_to_first_chunk", ttft_s)
            span.add_event(
                "first_token", {"gen_ai.response.time_to_first_chunk": ttft_s}, started_ns + int(ttft_s * 1e9)
            )
    else:
        route = getattr(scope.get("route"), "path", None)
        if route:
            span.set_attribute("http.route", route)
        span.update_name(f"{scope['method']} {route}" if route else scope["method"])
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()
