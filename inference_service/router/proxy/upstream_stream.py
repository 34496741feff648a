"""One admitted streaming call to a runtime, as the dispatcher opened it (see dispatch.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from typing import Protocol

import aiohttp

from inference_service.router.observability import tracing
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.sse import USAGE_MARK, usages_in
from inference_service.router.proxy.upstream import UpstreamUnreachable, sse_blocks
from inference_service.runtimes.base import Endpoint


class Accounting(Protocol):
    """What counts a call's usage and failure for its key (the dispatcher)."""

    def call_failed(self, model_id: str) -> None: ...

    def record_usage(self, model_id: str, usage: object) -> None: ...


class UpstreamStream:
    """One admitted streaming call: the upstream response, and the slot and lease it holds.

    Whoever opened it closes it with ``async with`` - nothing is left for a generator's
    ``finally`` or the garbage collector to release. Reading observes the stream for
    metrics on the way: time to the first token, and token usage (usually in the last
    event, so only a run of events that mentions it is parsed).
    """

    def __init__(
        self,
        model_id: str,
        runtime: str,
        endpoint: Endpoint,
        response: aiohttp.ClientResponse,
        stack: contextlib.AsyncExitStack,
        metrics: Metrics,
        call: tracing.CallHandle,
        accounting: Accounting,
    ) -> None:
        """``accounting``: what counts the call's usage and failure for its key (the dispatcher)."""
        self.model_id = model_id
        self.endpoint = endpoint
        self._counts_usage = True
        self._accounting = accounting
        self._runtime = runtime
        self._response = response
        self._stack = stack
        self._metrics = metrics
        self._call = call
        self._started = time.perf_counter()
        self._first_token_seen = False

    def mark_resumed(self) -> None:
        """This call continues a stream (proxy/resume/): its first token is not the request's, and the
        usage it reports is counted by the resume, rewritten for the whole answer."""
        self._first_token_seen = True
        self._counts_usage = False

    async def __aenter__(self) -> UpstreamStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the upstream connection (llama-server frees the slot), then the admission slot and lease."""
        await self._stack.aclose()

    async def blocks(self) -> AsyncGenerator[bytes, None]:
        """Runs of complete SSE events as they arrive (see :func:`sse_blocks`).

        Raises UpstreamUnreachable, naming the model and its runtime, if the runtime dies mid-stream.
        """
        try:
            async for block in self._call.observe(sse_blocks(self._response.content.iter_any())):
                if not self._first_token_seen and (b"data: {" in block or b"event: " in block):
                    self._first_token_seen = True  # OpenAI chunks; Anthropic/Responses events
                    self._metrics.observe_ttft(self.model_id, time.perf_counter() - self._started)
                if USAGE_MARK in block and self._counts_usage:
                    for usage in usages_in(block):
                        self._accounting.record_usage(self.model_id, usage)
                yield block
        except UpstreamUnreachable as error:  # say which runtime and what happened, not how aiohttp saw it
            self._accounting.call_failed(self.model_id)
            raise UpstreamUnreachable(
                f"model {self.model_id!r} ({self._runtime} runtime) stopped mid-stream: {error}; "
                "the runtime process crashed, was stopped or dropped the connection"
            ) from None

    async def events(self) -> AsyncGenerator[bytes, None]:
        """Each SSE event on its own, without its blank line (for callers that read the events)."""
        async for block in self.blocks():
            for event in block.split(b"\n\n"):
                if event.strip():
                    yield event
