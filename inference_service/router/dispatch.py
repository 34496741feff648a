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
from collections import deque
from typing import Any

import aiohttp

from inference_service.config import Settings
from inference_service.router.admission import AdmissionQueue, QueueFull, QueueTimeout
from inference_service.router.errors import APIError, not_found, service_unavailable, upstream_error
from inference_service.router.metrics import Metrics
from inference_service.router.upstream import (
    SSEBlockReader,
    UpstreamClient,
    UpstreamReply,
    UpstreamUnreachable,
    split_events,
)
from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import InsufficientCapacity, ModelUnavailable, Supervisor, UnknownModel

logger = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]"
_USAGE_MARK = b'"usage":{'


class UpstreamStream:
    """A streaming upstream call in progress: iterate it for its SSE events, then ``aclose()`` it.

    With ``blocks`` it yields the upstream's bytes as they arrive, as runs of whole events with
    their terminators (see :class:`SSEBlockReader`): what a relay needs. Without, one event at a
    time without its blank-line terminator: what an observer parsing each event needs.

    It owns the admission slot, the model lease and the upstream response, and ``aclose()``
    releases them whether or not iteration ever started - unlike a generator, which skips its
    cleanup when closed before its first step, leaving the slot to garbage collection. The
    end of the stream (or its failure) releases them too. Per block it records the time to
    the first token and the usage, with substring searches: only a block carrying usage is
    parsed.
    """

    def __init__(
        self, stack: contextlib.AsyncExitStack, response: aiohttp.ClientResponse, model_id: str, metrics: Metrics, blocks: bool
    ) -> None:
        self._stack = stack
        self._reader = SSEBlockReader(response)
        self._model_id = model_id
        self._metrics = metrics
        self._started = time.perf_counter()
        self._first = True
        self._events: deque[bytes] | None = None if blocks else deque()

    def __aiter__(self) -> UpstreamStream:
        return self

    async def __anext__(self) -> bytes:
        if self._events is None:
            return await self._next_block()
        while not self._events:
            self._events.extend(split_events(await self._next_block()))
        return self._events.popleft()

    async def _next_block(self) -> bytes:
        try:
            block = await self._reader.read()
        except BaseException:  # the end, an upstream failure or a cancellation: release at once
            await self.aclose()
            raise
        if self._first and b"data: {" in block:
            self._first = False
            self._metrics.ttft.labels(self._model_id).observe(time.perf_counter() - self._started)
        if _USAGE_MARK in block:
            self._record_usage(block)
        return block

    def _record_usage(self, block: bytes) -> None:
        for event in split_events(block):
            if _USAGE_MARK in event and event.startswith(b"data: "):
                with contextlib.suppress(ValueError, AttributeError):
                    self._metrics.record_usage(self._model_id, json.loads(event[6:]).get("usage"))

    async def aclose(self) -> None:
        """Release the slot, the lease and the upstream connection; idempotent."""
        await self._stack.aclose()


class Dispatcher:
    def __init__(self, settings: Settings, supervisor: Supervisor, upstream: UpstreamClient, metrics: Metrics) -> None:
        self.supervisor = supervisor
        self.upstream = upstream
        self.metrics = metrics
        self.queues = {
            model_id: AdmissionQueue(
                parallel=model.parallel,
                max_queue=model.queue_size if model.queue_size is not None else settings.queue_size,
                timeout_s=model.queue_timeout_s or settings.queue_timeout_s,
            )
            for model_id, model in settings.models.items()
        }

    async def _admit(self, stack: contextlib.AsyncExitStack, model_id: str, priority: int) -> Endpoint:
        """Wait for a slot, then for the model to be ready; translate refusals into API errors."""
        queue = self.queues[model_id]
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
        self,
        model_id: str,
        path: str,
        body: dict[str, Any],
        priority: int = 2,
        request_id: str | None = None,
        *,
        blocks: bool = False,
    ) -> UpstreamStream:
        """Start a streaming call. Errors before the first byte raise APIError; the returned
        stream yields each upstream SSE event without its blank-line terminator (``blocks``:
        runs of whole events with their terminators, as they arrive) and raises
        UpstreamUnreachable if the runtime dies mid-stream."""
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
        return UpstreamStream(stack, response, model_id, self.metrics, blocks)
