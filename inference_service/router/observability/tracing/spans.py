"""The spans of one traced request: its SERVER span's record, and the spans the pipeline opens under it.

Imported only when tracing is on (by the SDK set-up). Every span here is a child of the
span current where it starts - the request's SERVER span, or the orchestration stage
running - so the tree follows the code's nesting without anyone passing spans around.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inference_service.events import EVICTION, LOAD_PROGRESS, Event
from inference_service.router.observability.tracing import attributes, content
from inference_service.router.proxy.usage import usage_of
from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import ModelState, Supervisor

#: W3C Trace Context (``traceparent``/``tracestate``): what the service reads from its callers and
#: sends to its upstreams, whatever ``OTEL_PROPAGATORS`` says (the router's contract is W3C).
PROPAGATOR = TraceContextTextMapPropagator()
_USAGE_HINT = b'"usage"'
#: The exemplar label holding the trace id (what Grafana's exemplar link to the traces reads).
EXEMPLAR_TRACE_ID = "trace_id"


class Traced:
    """A started span. ``with`` makes it the parent of what runs inside and ends it on the way out,
    recording an exception that passes; a span that outlives one block (a streamed stage, across
    its generator's yields) is made current with :meth:`current` for a while and ended with :meth:`end`."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self._scope: AbstractContextManager[Span] | None = None

    def current(self) -> AbstractContextManager[Span]:
        """Parent of the spans started inside; an exception passing is recorded (the span is not ended)."""
        return trace.use_span(self.span)

    def record(self, error: BaseException) -> None:
        self.span.record_exception(error)
        self.span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))

    def end(self) -> None:
        self.span.end()

    def __enter__(self) -> Traced:
        self._scope = self.current()
        self._scope.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            assert self._scope is not None
            self._scope.__exit__(*exc_info)
        finally:
            self.end()


class TracedCall(Traced):
    """The CLIENT span of one upstream call: current while the request is sent (its ``traceparent``
    goes upstream), ended when the reply is read or the stream closed."""

    def __init__(self, span: Span, request: RequestTrace) -> None:
        super().__init__(span)
        self._request = request
        self._started = time.perf_counter()
        self._reasons: list[str] = []

    def replied(self, status: int, body: bytes | None = None) -> None:
        """The upstream's status, and for a whole reply what it says: usage, finish reasons, the answer."""
        self.span.set_attribute("http.response.status_code", status)
        if status >= 400:
            self.span.set_attribute("error.type", str(status))
            self.span.set_status(Status(StatusCode.ERROR, f"the upstream answered {status}"))
        if body is None or status != 200:
            return
        self.span.set_attributes(attributes.usage_attributes(usage_of(body)))
        self._finished(attributes.finish_reasons(body))
        if self._request.capture_content:
            self.span.set_attributes(content.output_attributes(body))

    async def observe(self, blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass a stream's runs of events on, noting its first chunk, finish reasons and usage.

        Only the runs that carry them are searched further; nothing is recorded per chunk, and
        each finding is set at once (the stream may be left unfinished by its reader).
        """
        first = True
        try:
            async for block in blocks:
                if first:
                    first = False
                    self.span.set_attribute("gen_ai.response.time_to_first_chunk", time.perf_counter() - self._started)
                if attributes.FINISH_REASON_HINT in block:
                    self._finished(attributes.finish_reasons(block))
                if _USAGE_HINT in block:
                    self.span.set_attributes(attributes.usage_attributes(usage_of(block)))
                yield block
        except Exception as error:
            self.record(error)
            raise

    def _finished(self, reasons: list[str]) -> None:
        if reasons:
            self._reasons += reasons
            self.span.set_attribute("gen_ai.response.finish_reasons", self._reasons)
            self._request.finish_reasons = list(self._reasons)


@dataclass(eq=False)
class _Load:
    model_id: str
    span: Span
    evicted: list[str] = field(default_factory=list)


class LoadWatch:
    """Load spans, told by the supervisor's events what happens while they are open.

    The supervisor knows nothing of traces: the router opens a load span around the wait a
    request (or an orchestration's preparation) has to do, and this listener, on the event
    bus, ends it when the model's ``loaded`` event says how long the load took, and lists the
    models evicted meanwhile to make room (``capacity`` and ``swap`` evictions; with several
    loads waiting at once, each lists them all).
    """

    def __init__(self) -> None:
        self._open: set[_Load] = set()

    def observe(self, event: Event) -> None:
        if not self._open:
            return
        if event.type == LOAD_PROGRESS and event.data.get("phase") == "loaded":
            for load in [load for load in self._open if load.model_id == event.model]:
                load.span.set_attribute("inference.load.seconds", float(event.data.get("load_s") or 0.0))
                self._close(load)
        elif event.type == EVICTION and event.data.get("reason") in ("capacity", "swap") and event.model:
            for load in self._open:
                load.evicted.append(event.model)
                load.span.set_attribute("inference.load.evicted", load.evicted)

    @contextlib.contextmanager
    def loading(self, tracer: Tracer, supervisor: Supervisor, model_ids: Sequence[str]) -> Iterator[None]:
        """A load span for each of ``model_ids`` not loaded yet, for as long as the block waits for it."""
        loads = []
        for model_id in dict.fromkeys(model_ids):
            status = supervisor.status(model_id)
            if status.state != ModelState.LOADED:
                model = {"gen_ai.request.model": model_id, "inference.model.runtime": status.runtime}
                state = {"inference.model.state": status.state.value}  # loading: it joined a load under way
                span = tracer.start_span(f"load {model_id}", kind=SpanKind.INTERNAL, attributes=model | state)
                loads.append(_Load(model_id, span))
        self._open.update(loads)
        try:
            yield
        except Exception as error:
            for load in loads:
                if load in self._open:
                    Traced(load.span).record(error)
            raise
        finally:
            for load in loads:
                if load in self._open:
                    self._close(load)

    def _close(self, load: _Load) -> None:
        self._open.discard(load)
        load.span.end()


class RequestTrace:
    """One request's trace: its SERVER span, and what the spans under it tell it (finish reasons)."""

    def __init__(self, tracer: Tracer, span: Span, capture_content: bool, loads: LoadWatch) -> None:
        self.tracer = tracer
        self.span = span
        self.capture_content = capture_content
        self.loads = loads
        self.finish_reasons: list[str] = []
        self.request_model: str | None = None  # the model the client named, once the request body is read
        context = span.get_span_context()
        self.trace_id = format(context.trace_id, "032x")
        #: The Prometheus exemplar of the request's observations: only a sampled trace can be looked up.
        self.exemplar = (
            {EXEMPLAR_TRACE_ID: self.trace_id, "span_id": format(context.span_id, "016x")}
            if context.trace_flags.sampled
            else None
        )

    def note_request(self, body: Mapping[str, Any]) -> None:
        asked = attributes.request_attributes(body)
        self.span.set_attributes(asked)
        model = asked.get("gen_ai.request.model")
        self.request_model = model if isinstance(model, str) else None

    def internal(self, name: str, attributes: Mapping[str, attributes.AttributeValue]) -> Traced:
        return Traced(self.tracer.start_span(name, kind=SpanKind.INTERNAL, attributes=attributes))

    def upstream_call(
        self,
        model_id: str,
        runtime: str,
        endpoint: Endpoint,
        path: str,
        body: Mapping[str, Any],
        filtered: Sequence[str] = (),
    ) -> TracedCall:
        url = urlsplit(endpoint.base_url)
        operation = attributes.operation(path)
        call = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": attributes.PROVIDERS.get(runtime, runtime),
            **attributes.request_attributes(body),
            "gen_ai.request.model": model_id,
            "gen_ai.response.model": model_id,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "http.request.method": "POST",
            "url.path": url.path.rstrip("/") + path,
        }
        if filtered:
            call["inference.request.filtered"] = list(filtered)  # the model's request filters at work
        if self.capture_content:
            call |= content.input_attributes(body)
        span = self.tracer.start_span(f"{operation} {model_id}", kind=SpanKind.CLIENT, attributes=call)
        return TracedCall(span, self)

    def inject(self, headers: dict[str, str]) -> None:
        """``traceparent`` (and ``tracestate``) of the current span, for a request going upstream."""
        PROPAGATOR.inject(headers)
