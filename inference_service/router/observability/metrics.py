"""Prometheus metrics, in a registry of their own so several apps can live in one process (tests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from inference_service.events import EVICTION, KV_CACHE, LOAD_PROGRESS, Event, EventBus
from inference_service.router.observability import activity, tracing
from inference_service.router.observability.child_metrics import ChildMetrics
from inference_service.router.serving.disconnect import CLIENT_CLOSED, CLIENT_GONE
from inference_service.router.serving.errors import APIError
from inference_service.runtimes.kv_store import KVFileStore
from inference_service.supervisor import ModelState, Supervisor

#: The status label of a request answered in full.
_ANSWERED = "200"
_CLIENT_CLOSED_LABEL = str(CLIENT_CLOSED)
#: What ends a request before its answer is complete: its client gone, or its task cancelled
#: (a stream given up on a client that reads nothing, the shutdown cutting it off).
_CUT_SHORT: tuple[type[BaseException], ...] = (*CLIENT_GONE, asyncio.CancelledError)

_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self, events: EventBus | None = None) -> None:
        """``events``: the bus whose listener errors /metrics shows (None: not shown, for tests of other series)."""
        self.registry = CollectorRegistry()
        if events is not None:
            self.registry.register(ListenerErrors(events))
        # The router process itself: process_* (RSS, CPU, open fds) and python_* (GC, version), as any exporter has.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.children = ChildMetrics()
        self.registry.register(self.children)
        self.requests = Counter(
            "inference_requests",
            "Requests by model, endpoint and HTTP status",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_request_duration_seconds",
            "Time until the whole response was sent",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "inference_time_to_first_token_seconds",
            "Streaming: time until the first token event",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.prompt_tokens = Counter("inference_prompt_tokens", "Prompt tokens", ["model"], registry=self.registry)
        self.completion_tokens = Counter(
            "inference_completion_tokens", "Completion tokens", ["model"], registry=self.registry
        )
        self.queue_depth = Gauge(
            "inference_queue_depth", "Requests waiting for a slot", ["model"], registry=self.registry
        )
        self.in_flight = Gauge(
            "inference_in_flight", "Requests being served upstream", ["model"], registry=self.registry
        )
        self.replica_requests = Counter(
            "inference_replica_requests",
            "Requests given to each replica of a model with several (replica: its index, bounded by replicas)",
            ["model", "replica"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "inference_rejected", "Requests refused by admission", ["model", "reason"], registry=self.registry
        )
        self.slow_readers = Counter(
            "inference_slow_reader_cancellations",
            "Streams cancelled because the client accepted nothing for stream_send_timeout_s",
            ["model"],
            registry=self.registry,
        )
        self.model_state = Gauge(
            "inference_model_state", "1 for the model's current state", ["model", "state"], registry=self.registry
        )
        self.event_subscribers = Gauge(
            "inference_event_subscribers", "Open /v1/events streams (a leak shows here)", registry=self.registry
        )
        self.process_rss = Gauge(
            "inference_process_rss_bytes",
            "Resident memory of the model's processes (its replicas summed)",
            ["model"],
            registry=self.registry,
        )
        self.memory_estimate = Gauge(
            "inference_model_memory_estimate_bytes",
            "The model's memory estimate (weights, KV cache, prompt cache, overhead): its process RSS should stay near it",
            ["model"],
            registry=self.registry,
        )
        self.kv_cache = KVCacheMetrics(self.registry)
        self.model_loads = Counter(
            "inference_model_loads", "Completed model loads (restarts included)", ["model"], registry=self.registry
        )
        self.load_duration = Histogram(
            "inference_model_load_duration_seconds",
            "Time from starting a model's runtime until it serves",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self.model_restarts = Counter(
            "inference_model_restarts",
            "Restarts after a crash (each counted once, however many attempts it took)",
            ["model"],
            registry=self.registry,
        )
        self.model_evictions = Counter(
            "inference_model_evictions",
            "Models unloaded to make room or for idleness",
            ["model", "reason"],
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "inference_fallbacks",
            "Requests served by a fallback model",
            ["model", "fallback", "reason"],
            registry=self.registry,
        )
        self.stream_resumes = Counter(
            "inference_stream_resumes",
            "Calls whose runtime died mid-answer, by outcome: resumed (continued, replayed or sent again), failed,"
            " not_resumable; diverged: a replay dropped for a continuation",
            ["model", "outcome"],
            registry=self.registry,
        )
        # Per key: label values are key names and model ids from the config only (bounded).
        self.key_requests = Counter(
            "inference_key_requests",
            "Calls to a model, by API key name and model",
            ["key", "model"],
            registry=self.registry,
        )
        self.key_tokens = Counter(
            "inference_key_tokens",
            "Tokens the runtimes reported, by API key name, model and kind (prompt, completion)",
            ["key", "model", "kind"],
            registry=self.registry,
        )
        self.usage_lost = Counter(
            "inference_usage_lost_requests",
            "Calls whose usage the ledger could not write (its database unusable): missing from /v1/usage",
            registry=self.registry,
        )
        self.activity_lost = Counter(
            "inference_activity_lost_records",
            "Requests the activity history could not write (its database unusable): missing from /v1/activity",
            registry=self.registry,
        )

    def observe_event(self, event: Event) -> None:
        """Count loads, restarts and evictions from the supervisor's events (see EventBus.listen)."""
        if event.type == LOAD_PROGRESS and event.data.get("phase") == "loaded" and event.model:
            self.model_loads.labels(event.model).inc()
            self.load_duration.labels(event.model).observe(float(event.data.get("load_s") or 0.0))
        elif (
            event.type == LOAD_PROGRESS
            and event.data.get("phase") == "restarting"
            and event.data.get("attempt") == 1
            and event.model
        ):
            self.model_restarts.labels(event.model).inc()
        elif event.type == EVICTION and event.model:
            self.model_evictions.labels(event.model, str(event.data.get("reason", "unknown"))).inc()
        elif event.type == KV_CACHE and event.model:
            self.kv_cache.observe(event.model, event.data)

    def record_usage(self, model_id: str, usage: object) -> tuple[int | None, int | None]:
        """Count a runtime's reported ``usage``; the (prompt, completion) tokens read from it."""
        if not isinstance(usage, dict):
            return None, None
        # OpenAI chat/completions name them prompt/completion; the Responses and Anthropic APIs input/output.
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        prompt, completion = (value if isinstance(value, int) else None for value in (prompt, completion))
        if record := activity.current():
            record.add_usage(prompt, completion)
        if isinstance(prompt, int):
            self.prompt_tokens.labels(model_id).inc(prompt)
        if isinstance(completion, int):
            self.completion_tokens.labels(model_id).inc(completion)
        return prompt, completion

    def record_key_usage(self, key: str, model_id: str, requests: int, prompt: int, completion: int) -> None:
        """The per-key counters (the usage ledger's totals, as Prometheus sees them)."""
        if requests:
            self.key_requests.labels(key, model_id).inc(requests)
        if prompt:
            self.key_tokens.labels(key, model_id, "prompt").inc(prompt)
        if completion:
            self.key_tokens.labels(key, model_id, "completion").inc(completion)

    def observe_ttft(self, model_id: str, seconds: float) -> None:
        self.ttft.labels(model_id).observe(seconds, tracing.exemplar())
        if record := activity.current():
            record.mark_first_token()

    def record_request(
        self, model_id: str, endpoint: str, started: float, outcome: str | BaseException = _ANSWERED
    ) -> None:
        """Count one request by the status it ended with, and time it (from ``started``, a perf_counter
        reading) - every request, however it ended, so that the counter and the histogram agree.

        ``outcome`` is the status it was answered with, or what ended it: an APIError counts as
        its status; a request cut short - its client gone, or its task cancelled (a stream nobody
        reads, the shutdown cutting it off) - as 499, which its access line then shows too (a
        stream's status line went out as 200); anything else as the 500 it becomes.
        """
        if isinstance(outcome, str):
            status = outcome
        elif isinstance(outcome, APIError):
            status = str(outcome.status)
        elif isinstance(outcome, _CUT_SHORT):
            status = _CLIENT_CLOSED_LABEL
            activity.note(status=CLIENT_CLOSED)
        else:
            status = "500"
        self.requests.labels(model_id, endpoint, status).inc()
        # A traced request's trace id goes with its duration, as the exemplar.
        self.latency.labels(model_id, endpoint).observe(time.perf_counter() - started, tracing.exemplar())

    async def render(
        self, supervisor: Supervisor, openmetrics: bool = False, kv_store: KVFileStore | None = None
    ) -> bytes:
        """Refresh the gauges that mirror supervisor state and scrape the children, then serialise everything:
        in the OpenMetrics format when the scraper asks for it (only that one carries exemplars)."""
        for model_id in supervisor.model_ids:
            status = supervisor.status(model_id)
            for state in ModelState:
                self.model_state.labels(model_id, state.value).set(1 if status.state == state else 0)
            rss_mb = status.rss_mb  # every replica's process, summed
            if rss_mb is None:
                with contextlib.suppress(KeyError):  # no process, no series: a 0 would read as "uses no memory"
                    self.process_rss.remove(model_id)
            else:
                self.process_rss.labels(model_id).set(rss_mb * 2**20)
            if status.footprint_mb is not None:
                self.memory_estimate.labels(model_id).set(status.footprint_mb * 2**20)
            if kv_store is not None and status.runtime == "llamacpp":
                self.kv_cache.disk.labels(model_id).set(kv_store.saved_bytes(model_id))
        self.event_subscribers.set(supervisor.events.subscribers)
        await self.children.scrape(supervisor)
        return (generate_openmetrics if openmetrics else generate_latest)(self.registry)


class ListenerErrors:
    """``inference_event_listener_errors_total``: exceptions the event bus caught from its listeners.

    A listener's bug cannot break a model's transition (the bus logs and counts it instead), so
    without this counter it would go unnoticed. The bus owns the count - it sits below the router
    and knows no Prometheus - and this collector reads it at each scrape.
    """

    def __init__(self, events: EventBus) -> None:
        self._events = events

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "inference_event_listener_errors",
            "Exceptions raised by event listeners (each logged with its traceback): a leak of bugs shows here",
            value=self._events.listener_errors,
        )


class KVCacheMetrics:
    """Slot KV caches kept across stops (``kv_cache`` events from the llama.cpp runtime; see runtimes/kv_slots.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.saves = Counter("inference_kv_cache_saves", "Slots saved before a stop", ["model"], registry=registry)
        self.restores = Counter(
            "inference_kv_cache_restores", "Slots restored after a start", ["model"], registry=registry
        )
        self.bytes = Counter(
            "inference_kv_cache_bytes",
            "Bytes of slot KV cache saved or restored",
            ["model", "action"],
            registry=registry,
        )
        self.seconds = Counter(
            "inference_kv_cache_seconds", "Time spent saving or restoring slots", ["model", "action"], registry=registry
        )
        self.skipped = Counter(
            "inference_kv_cache_skipped",
            "Saved slots not restored (missing, truncated, corrupt, foreign, refused), slots not saved (busy) "
            "and saves or restores cut short (timeout, error)",
            ["model", "reason"],
            registry=registry,
        )
        self.disk = Gauge(
            "inference_kv_cache_disk_bytes", "Slot KV cache kept on disk for the model", ["model"], registry=registry
        )

    def observe(self, model_id: str, data: dict[str, object]) -> None:
        action = data.get("action")
        if action in ("saved", "restored"):
            (self.saves if action == "saved" else self.restores).labels(model_id).inc()
            self.bytes.labels(model_id, str(action)).inc(_number(data.get("bytes")))
            self.seconds.labels(model_id, str(action)).inc(_number(data.get("seconds")))
        elif action == "skipped":
            self.skipped.labels(model_id, str(data.get("reason", "unknown"))).inc()


def _number(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) else 0.0
