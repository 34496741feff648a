"""A real OTLP/HTTP trace receiver: what a collector sees of the router's traces.

It is the protocol itself - ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest``,
decoded with ``opentelemetry-proto``, answered with an ``ExportTraceServiceResponse`` - served
from a thread of the test process. Besides keeping every span it received (and the raw
bodies, to check what never went out), it can misbehave as a collector does: answer 503
(down), or hold every export until released (slow).
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

KINDS = {Span.SPAN_KIND_SERVER: "SERVER", Span.SPAN_KIND_CLIENT: "CLIENT", Span.SPAN_KIND_INTERNAL: "INTERNAL"}
STATUSES = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Iterator[KeyValue] | Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector decoded it; ids in hex, as in ``traceparent``."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[ReceivedEvent]
    status: str
    status_message: str
    resource: dict[str, Any]

    def event(self, name: str) -> ReceivedEvent:
        (found,) = [event for event in self.events if event.name == name]
        return found


def decode(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=KINDS.get(span.kind, str(span.kind)),
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() or None,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        attributes=_attributes(span.attributes),
                        events=[
                            ReceivedEvent(event.name, event.time_unix_nano, _attributes(event.attributes))
                            for event in span.events
                        ],
                        status=STATUSES[span.status.code],
                        status_message=span.status.message,
                        resource=resource,
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    """Every span received so far, in arrival order; ``url`` is the ``OTEL_EXPORTER_OTLP_ENDPOINT``."""

    url: str = ""
    bodies: list[bytes] = field(default_factory=list)
    received: list[ReceivedSpan] = field(default_factory=list)
    #: 200 (accept) or an error status to answer every export with.
    answer: int = 200
    #: Cleared: every export waits, unanswered, until it is set again (a slow collector).
    open: threading.Event = field(default_factory=threading.Event)
    exports_waiting: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.received)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans() if span.trace_id == trace_id]

    def wait_for(self, condition: Callable[[list[ReceivedSpan]], bool], timeout_s: float = 30.0) -> list[ReceivedSpan]:
        """The spans received once ``condition(spans)`` holds (spans are exported in batches, a moment later)."""
        deadline = time.monotonic() + timeout_s
        while not condition(spans := self.spans()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the spans received did not satisfy the condition: {[s.name for s in spans]}")
            time.sleep(0.05)
        return spans

    def wait_for_trace(self, trace_id: str, count: int, timeout_s: float = 30.0) -> list[ReceivedSpan]:
        """The ``count`` spans of one trace, once all arrived."""
        return [
            span
            for span in self.wait_for(lambda spans: sum(s.trace_id == trace_id for s in spans) >= count, timeout_s)
            if span.trace_id == trace_id
        ]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        with self._lock:
            self.exports_waiting += 1
        self.open.wait()
        with self._lock:
            self.exports_waiting -= 1
            if self.answer == 200:
                self.bodies.append(body)
                self.received.extend(decode(body))
        reply = ExportTraceServiceResponse().SerializeToString() if self.answer == 200 else b""
        handler.send_response(self.answer)
        handler.send_header("Content-Type", "application/x-protobuf")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """A receiver on a free 127.0.0.1 port, accepting exports, until the block exits."""
    receiver = OtlpReceiver()
    receiver.open.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test's output is not the place for a request log

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.open.set()  # release any export held, so its thread ends
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
