"""The OpenTelemetry SDK set up for the service: imported only when tracing is on.

The provider is the app's own, never the global one: FastAPI (0.16x) traces on its own
once a global provider is set, and would double every SERVER span; and several apps in
one process (tests) each keep theirs. Spans leave through the SDK's batch processor -
a bounded queue drained by its own thread - to the OTLP/HTTP exporter, so an exporter
that is down or slow costs requests nothing: spans beyond the queue are dropped, and
counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections import Counter
from collections.abc import Iterator

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from starlette.applications import Starlette

from inference_service import __version__
from inference_service.config import ConfigError
from inference_service.events import EventBus
from inference_service.router.observability.tracing.middleware import TracingMiddleware
from inference_service.router.observability.tracing.settings import TracingSettings
from inference_service.router.observability.tracing.spans import LoadWatch

#: How long shutdown waits for the queued spans to go out before leaving them.
SHUTDOWN_TIMEOUT_S = 5.0
#: The SDK's own counts (its self-observability metrics) of spans it could not export.
_DROPPED = "otel.sdk.processor.span.processed"  # with error.type: queue_full, already_shutdown
_FAILED = "otel.sdk.exporter.span.exported"  # with error.type: the export's failure


def _sampler(settings: TracingSettings) -> Sampler:
    ratio = TraceIdRatioBased(1.0 if settings.sampler_arg is None else settings.sampler_arg)
    samplers: dict[str, Sampler] = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": ParentBased(ALWAYS_ON),
        "parentbased_always_off": ParentBased(ALWAYS_OFF),
        "parentbased_traceidratio": ParentBased(ratio),
    }
    return samplers[settings.sampler]


@contextlib.contextmanager
def _sdk_self_metrics() -> Iterator[None]:
    """The SDK counts dropped and failed spans only when its self-observability is switched on by
    this variable as the processor and the exporter are built: on for them, and only them (the
    tracer's per-span counters would cost every span)."""
    previous = os.environ.get(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED)
    os.environ[OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED] = "true"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED]
        else:
            os.environ[OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED] = previous


class SpanLoss:
    """A Prometheus collector: ``inference_trace_spans_dropped_total{reason}``, from the SDK's own counts.

    ``queue_full``: the export queue was full (the exporter is down or slow); ``export_failed``:
    the spans of an export the collector did not accept; ``already_shutdown``: ended after shutdown.
    """

    def __init__(self, reader: InMemoryMetricReader) -> None:
        self._reader = reader

    def collect(self) -> Iterator[Metric]:
        lost = Counter({"queue_full": 0, "export_failed": 0})
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        error = (point.attributes or {}).get("error.type")
                        if error is None or not isinstance(point, NumberDataPoint):
                            continue
                        if metric.name == _DROPPED:
                            lost[str(error)] += int(point.value)
                        elif metric.name == _FAILED:
                            lost["export_failed"] += int(point.value)
        family = CounterMetricFamily(
            "inference_trace_spans_dropped", "Spans tracing did not export, by reason", labels=["reason"]
        )
        for reason, count in sorted(lost.items()):
            family.add_metric([reason], count)
        yield family


class Tracing:
    """The service's tracer provider, its exporter and the request middleware; shut down with the app."""

    def __init__(self, settings: TracingSettings, events: EventBus, registry: CollectorRegistry) -> None:
        self.settings = settings
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        with _sdk_self_metrics():
            exporter = OTLPSpanExporter(endpoint=settings.traces_url, meter_provider=meters)
            try:
                processor = BatchSpanProcessor(exporter, meter_provider=meters)
            except ValueError as error:  # OTEL_BSP_MAX_EXPORT_BATCH_SIZE above OTEL_BSP_MAX_QUEUE_SIZE, ...
                raise ConfigError(f"OTEL_BSP_*: {error}") from None
        resource = Resource.create(
            {"service.version": __version__, **settings.resource_attributes, "service.name": settings.service_name}
        )
        self.provider = TracerProvider(sampler=_sampler(settings), resource=resource, shutdown_on_exit=False)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("inference_service", __version__)
        self.loads = LoadWatch()
        events.listen(self.loads.observe)
        registry.register(SpanLoss(reader))

    def install(self, app: Starlette) -> None:
        """Open a SERVER span for each request: call it just before adding the activity middleware,
        so that one is outside (it takes the trace id) and every other one inside (their refusals are traced)."""
        app.add_middleware(
            TracingMiddleware,
            tracer=self.tracer,
            loads=self.loads,
            capture_content=self.settings.capture_message_content,
        )

    async def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Export what is queued, for at most ``timeout_s``: a collector that is down must not hold up
        the service's exit (the exporter blocks, so it runs in a daemon thread of its own)."""
        finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        finished.set_running_or_notify_cancel()  # running: a wait that gives up cannot cancel it under the thread

        def shut_down() -> None:
            self.provider.shutdown()
            finished.set_result(None)

        threading.Thread(target=shut_down, name="tracing-shutdown", daemon=True).start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(finished), timeout_s)
