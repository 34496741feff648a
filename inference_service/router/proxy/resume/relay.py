"""Streams that survive their runtime: a proxied stream whose runtime dies mid-answer goes on.

When the upstream of a chat, Anthropic Messages or Responses stream dies (the child crashed or
was killed, a remote host reset the connection), the client's stream stays open: the dead call
is released, the model's restart is awaited - or its first fallback that can serve, as for any
request (dispatch.py's admission) - and the request is sent again with the text streamed so far
as a final assistant message, which the runtime continues (continuations.py). Its events are
relayed as the rest of the first stream: the client sees one stream, one ending, one usage.

A request whose answer comes out the same every time - greedy (``temperature`` 0, ``top_k`` 1)
or seeded - is *replayed* instead, when no more than ``resume_replay_max_tokens`` of it were
sent: sent again as it was, its answer checked against the text the client has and relayed
from the cut (echo.py's Replay). It costs the time those tokens took to generate, but gives
the uninterrupted answer exactly: a continuation computes the text so far as one prompt batch,
where the answer computed it token by token, and a near-tie of greedy decoding may then go the
other way. A replay that parts from the text (a fallback took over, a tie went the other way)
is abandoned on the spot for a continuation of that text, on the same attempt.

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
    NotResumable,
    Progress,
    Resumed,
    progress_of,
    rewritten,
)
from inference_service.router.proxy.resume.echo import Diverged, Echo, Replay
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
            died, replaced = error, True
        except Diverged as parted:  # only a replay, after a death: its model serves
            logger.warning("stream of model %s: %s; continued from its text", call.model_id, parted)
            dispatcher.metrics.stream_resumes.labels(call.model_id, "diverged").inc()
            replaced = False
        outcome = "not_resumable"
        try:
            if refusal is not None:
                raise refusal
            assert sent is not None  # kept whenever there is no refusal
            if replaced and resumes >= dispatcher.resume_max_attempts:
                outcome = "failed"
                raise _Failed(f"resumed {resumes} times already (resume_max_attempts)")
            blocks = await _resume(dispatcher, call, continuation, progress_of(continuation, sent), replaced)
        except (NotResumable, _Failed) as why:
            logger.warning("stream of model %s not resumed: %s", call.model_id, why)
            dispatcher.metrics.stream_resumes.labels(call.model_id, outcome).inc()
            await end_broken(protocol, emit, UpstreamUnreachable(f"{died}; not resumed: {why}"))
            return
        if replaced:
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
    dispatcher: Dispatcher, call: ResumableCall, continuation: Continuation, progress: Progress, replaced: bool
) -> AsyncIterator[bytes]:
    """Open the rest of the answer the client has (``progress``); its runs of events, rewritten as the rest of the stream.

    ``replaced``: the runtime died, and its replacement is awaited first; else a replay parted from
    the text, and the stream is continued from it where it is. NotResumable if the stream cannot be
    continued honestly, _Failed if nothing could continue it.
    """
    dead = call.upstream
    replay = replaced and 0 < progress.tokens <= dispatcher.resume_replay_max_tokens and reproducible(call.body)
    body = call.body if replay else continuation.request(call.body, progress)
    if replaced and not await dispatcher.until_replaced(dead.model_id, dead.endpoint):
        raise NotResumable(
            f"model {dead.model_id!r} was stopped (unload, eviction, idle TTL, swap, reload or shutdown)"
        )
    try:
        upstream = await call.reopen(body)
    except APIError as error:
        raise _Failed(f"no model could continue it: {error.message}") from None
    if not replay and upstream.model_id not in dispatcher.prefilling:
        raise NotResumable(f"its fallback {upstream.model_id!r} does not continue an assistant message")
    upstream.mark_resumed()
    resumed = (
        Resumed(progress, Replay(progress.text), 0)
        if replay
        else Resumed(progress, Echo(progress.text), progress.tokens)
    )
    model_id = upstream.model_id
    return rewritten(continuation, upstream.blocks(), resumed, lambda usage: dispatcher.record_usage(model_id, usage))


def reproducible(body: dict[str, Any]) -> bool:
    """Whether the runtime gives this request the same answer again: greedy decoding, or a fixed seed."""
    seed = body.get("seed")
    fixed_seed = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**32 - 1  # -1: random
    return body.get("temperature") == 0 or body.get("top_k") == 1 or fixed_seed
