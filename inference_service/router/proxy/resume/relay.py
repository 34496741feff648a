"""Streams that survive their runtime: a proxied stream whose runtime dies mid-answer goes on.

When the upstream of a chat, Anthropic Messages or Responses stream dies (the child crashed or
was killed, a remote host reset the connection), the client's stream stays open: the dead call
is released, the model's restart is awaited - or its first fallback that can serve, as for any
request (dispatch.py's admission) - and the request is sent again with the text streamed so far
as a final assistant message, which the runtime continues (continuations.py). Its events are
relayed as the rest of the first stream: the client sees one stream, one ending, one usage.

Bounded by ``resume_max_attempts`` per stream and, for each attempt, by the admission's own
``queue_timeout_s``. What cannot be continued honestly - tool-call deltas already sent,
``n > 1``, logprobs, a model that does not continue an assistant message - ends with the error
event it always did. Each attempt is counted in ``inference_stream_resumes_total{model,outcome}``
and the access line shows ``resumes=N``.

The relay's per-run cost is one ``list.append`` (the runs sent); they are read only on resume.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from inference_service.router.observability import activity
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.resume.continuations import (
    CONTINUATIONS,
    Continuation,
    Echo,
    NotResumable,
    Resumed,
    progress_of,
    rewritten,
)
from inference_service.router.proxy.sse import StreamProtocol, end_broken, end_incomplete, relay_events
from inference_service.router.proxy.upstream import UpstreamUnreachable
from inference_service.router.proxy.upstream_stream import UpstreamStream
from inference_service.router.serving.errors import APIError

logger = logging.getLogger(__name__)

Emit = Callable[[bytes], Awaitable[None]]


class ResumableCall(Protocol):
    """The proxied stream being relayed (stream.py's ProxiedStream): its request, and the upstream it holds."""

    @property
    def model_id(self) -> str:
        """The model the client asked for (its fallbacks may continue)."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def upstream(self) -> UpstreamStream: ...

    async def reopen(self, body: dict[str, Any]) -> UpstreamStream:
        """Release the dead upstream, then open and hold one for ``body``; APIError as ``open_stream``."""


def continuation_for(dispatcher: Dispatcher, path: str) -> Continuation | None:
    """How a stream to ``path`` is continued, or None when it is not (resuming off, another API)."""
    if not dispatcher.resume_streams or dispatcher.resume_max_attempts < 1:
        return None
    return CONTINUATIONS.get(path)


class _Failed(Exception):
    """A resume attempt that found nothing to continue on; the stream ends with its error."""


async def relay_resuming(
    dispatcher: Dispatcher, call: ResumableCall, continuation: Continuation, protocol: StreamProtocol, emit: Emit
) -> None:
    """Relay ``call``'s stream to its end, continuing it on a new upstream each time its runtime dies.

    A stream that could never be continued keeps no runs (its reason is kept for its end).
    """
    refusal = _refusal(dispatcher, call, continuation)
    sent: list[bytes] | None = [] if refusal is None else None
    blocks: AsyncIterator[bytes] = call.upstream.blocks()
    resumes = 0
    while True:
        try:
            if not await relay_events(blocks, protocol, emit, sent):
                await end_incomplete(protocol, emit)
            return
        except UpstreamUnreachable as error:
            died = error
        outcome = "not_resumable"
        try:
            if refusal is not None:
                raise refusal
            assert sent is not None  # kept whenever there is no refusal
            if resumes >= dispatcher.resume_max_attempts:
                outcome = "failed"
                raise _Failed(f"resumed {resumes} times already (resume_max_attempts)")
            blocks = await _resume(dispatcher, call, continuation, sent)
        except (NotResumable, _Failed) as why:
            logger.warning("stream of model %s not resumed: %s", call.model_id, why)
            dispatcher.metrics.stream_resumes.labels(call.model_id, outcome).inc()
            await end_broken(protocol, emit, UpstreamUnreachable(f"{died}; not resumed: {why}"))
            return
        resumes += 1
        dispatcher.metrics.stream_resumes.labels(call.model_id, "resumed").inc()
        activity.note(resumes=resumes)
        logger.warning("%s; resumed on model %s (resume %d)", died, call.upstream.model_id, resumes)


def _refusal(dispatcher: Dispatcher, call: ResumableCall, continuation: Continuation) -> NotResumable | None:
    """Why the stream could never be continued, known before its first event: its request, its model."""
    if call.upstream.model_id not in dispatcher.prefilling:
        return NotResumable(f"model {call.upstream.model_id!r} does not continue an assistant message")
    try:
        continuation.check(call.body)
    except NotResumable as refusal:
        return refusal
    return None


async def _resume(
    dispatcher: Dispatcher, call: ResumableCall, continuation: Continuation, sent: list[bytes]
) -> AsyncIterator[bytes]:
    """Open the continuation of what was ``sent``; its runs of events, rewritten as the rest of the stream.

    NotResumable if the stream cannot be continued honestly, _Failed if nothing could continue it.
    """
    dead = call.upstream
    progress = progress_of(continuation, sent)
    body = continuation.request(call.body, progress)
    if not await dispatcher.until_replaced(dead.model_id, dead.endpoint):
        raise NotResumable(
            f"model {dead.model_id!r} was stopped (unload, eviction, idle TTL, swap, reload or shutdown)"
        )
    try:
        upstream = await call.reopen(body)
    except APIError as error:
        raise _Failed(f"no model could continue it: {error.message}") from None
    if upstream.model_id not in dispatcher.prefilling:
        raise NotResumable(f"its fallback {upstream.model_id!r} does not continue an assistant message")
    upstream.mark_resumed()
    resumed = Resumed(progress, Echo(progress.text))
    model_id = upstream.model_id
    return rewritten(continuation, upstream.blocks(), resumed, lambda usage: dispatcher.record_usage(model_id, usage))
