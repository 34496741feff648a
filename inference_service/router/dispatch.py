"""Send one request to one model: admission, on-demand loading, the upstream call, metrics.

Both the HTTP routes and the orchestration modes go through :class:`Dispatcher`, so
every upstream call - a client's or an orchestration stage's - is admitted, counted
and protected the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from inference_service.config import Settings
from inference_service.router.admission import AdmissionQueue, QueueFull, QueueTimeout
from inference_service.router.errors import APIError, not_found, service_unavailable, upstream_error
from inference_service.router.metrics import Metrics
from inference_service.router.upstream import UpstreamClient, UpstreamReply, UpstreamUnreachable, sse_events
from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import InsufficientCapacity, ModelUnavailable, Supervisor, UnknownModel

logger = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]"


class Dispatcher:
    def __init__(self, settings: Settings, supervisor: Supervisor, upstream: UpstreamClient, metrics: Metrics) -> None:
        self.supervisor = supervisor
        self.upstream = upstream
        self.metrics = metrics
        self.queues: dict[str, AdmissionQueue] = {}
        self.configure_queues(settings)

    def configure_queues(self, settings: Settings) -> None:
        """One admission queue per model; on a config reload, existing queues take the new limits
        in place (requests holding or awaiting a slot keep it) and removed models' queues go."""
        for model_id, model in settings.models.items():
            parallel = model.parallel
            max_queue = model.queue_size if model.queue_size is not None else settings.queue_size
            timeout_s = model.queue_timeout_s or settings.queue_timeout_s
            queue = self.queues.get(model_id)
            if queue is None:
                self.queues[model_id] = AdmissionQueue(parallel=parallel, max_queue=max_queue, timeout_s=timeout_s)
            else:
                queue.parallel, queue.max_queue, queue.timeout_s = parallel, max_queue, timeout_s
        for model_id in set(self.queues) - set(settings.models):
            del self.queues[model_id]

    async def _admit(self, stack: contextlib.AsyncExitStack, model_id: str, priority: int) -> Endpoint:
        """Wait for a slot, then for the model to be ready; translate refusals into API errors."""
        queue = self.queues.get(model_id)
        if queue is None:  # removed by a config reload after the request was resolved
            raise not_found(f"The model '{model_id}' does not exist")
        depth = self.metrics.queue_depth.labels(model_id)
        depth.inc()
        try:
            await stack.enter_async_context(queue.slot(priority))
        except QueueFull as error:
            self.metrics.rejected.labels(model_id, "queue_full").inc()
            raise service_unavailable(f"model {model_id!r} is busy: {error}", "queue_full", retry_after_s=2) from None
        except QueueTimeout as error:
            self.metrics.rejected.labels(model_id, "queue_timeout").inc()
            raise service_unavailable(f"model {model_id!r} is busy: {error}", "queue_timeout", retry_after_s=5) from None
        finally:
            depth.dec()
        try:
            endpoint = await stack.enter_async_context(self.supervisor.lease(model_id))
        except UnknownModel as error:
            raise not_found(str(error)) from None
        except InsufficientCapacity as error:
            raise APIError(507, str(error), type="insufficient_capacity", code="insufficient_capacity") from None
        except ModelUnavailable as error:
            raise service_unavailable(str(error), "model_unavailable", retry_after_s=5) from None
        in_flight = self.metrics.in_flight.labels(model_id)
        in_flight.inc()
        stack.callback(in_flight.dec)
        return endpoint

    async def post(self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None) -> UpstreamReply:
        """A non-streaming call; upstream error statuses are returned, not raised."""
        async with contextlib.AsyncExitStack() as stack:
            endpoint = await self._admit(stack, model_id, priority)
            try:
                reply = await self.upstream.post(endpoint, path, {**body, "model": endpoint.model_name}, request_id)
            except UpstreamUnreachable as error:
                raise service_unavailable(f"model {model_id!r} did not answer: {error}", "upstream_unavailable", 1) from None
        if reply.status == 200 and b'"usage"' in reply.body:
            with contextlib.suppress(ValueError):
                self.metrics.record_usage(model_id, reply.json().get("usage"))
        return reply

    async def complete(self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None) -> dict[str, Any]:
        """A non-streaming call whose JSON answer is needed; any upstream error is raised as APIError."""
        reply = await self.post(model_id, path, body, priority, request_id)
        try:
            payload = reply.json()
        except ValueError:
            raise APIError(502, f"model {model_id!r} returned a non-JSON body", type="upstream_error") from None
        if reply.status != 200:
            raise upstream_error(reply.status, payload)
        return payload

    async def open_stream(
        self, model_id: str, path: str, body: dict[str, Any], priority: int = 2, request_id: str | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Start a streaming call. Errors before the first byte raise APIError; the returned
        iterator yields each upstream SSE event (without its blank-line terminator) and
        raises UpstreamUnreachable if the runtime dies mid-stream."""
        stack = contextlib.AsyncExitStack()
        try:
            endpoint = await self._admit(stack, model_id, priority)
            try:
                response = await self.upstream.open_stream(endpoint, path, {**body, "model": endpoint.model_name}, request_id)
            except UpstreamUnreachable as error:
                raise service_unavailable(f"model {model_id!r} did not answer: {error}", "upstream_unavailable", 1) from None
            stack.callback(response.close)
            if response.status != 200:
                raw = await response.read()
                try:
                    payload: Any = json.loads(raw)
                except ValueError:
                    payload = raw.decode(errors="replace")
                raise upstream_error(response.status, payload)
        except BaseException:
            await stack.aclose()
            raise
        return self._events(stack, sse_events(response), model_id)

    async def _events(
        self, stack: contextlib.AsyncExitStack, events: AsyncIterator[bytes], model_id: str
    ) -> AsyncGenerator[bytes, None]:
        started = time.perf_counter()
        first = True
        async with stack:
            async for event in events:
                if first and event.startswith(b"data: {"):
                    first = False
                    self.metrics.observe_ttft(model_id, time.perf_counter() - started)
                if b'"usage":{' in event:
                    with contextlib.suppress(ValueError, AttributeError):
                        self.metrics.record_usage(model_id, json.loads(event[6:]).get("usage"))
                yield event
