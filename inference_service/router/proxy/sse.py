"""Server-Sent Events framing: one ``[DONE]`` (OpenAI chat and completions) or the protocol's
terminal event (named-event streams), errors as events, and the relay of an upstream's events
that applies it. The engine that sends them is stream.py's :class:`EventStream`."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from inference_service.router.proxy.upstream import UpstreamUnreachable
from inference_service.router.serving.errors import envelope

logger = logging.getLogger(__name__)

DONE_LINE = b"data: [DONE]"
DONE = DONE_LINE + b"\n\n"
SSE_CONTENT_TYPE = b"text/event-stream; charset=utf-8"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def error_event(message: str, type: str = "upstream_error", code: str | None = None) -> bytes:
    return b"data: " + json.dumps(envelope(message, type, None, code)).encode() + b"\n\n"


#: The scope key a relayed stream keeps its :class:`StreamProtocol` under while its events flow
#: (None once its last event went out), so that a stream cut off from outside - by the
#: shutdown - is ended in its own framing, not OpenAI's.
STREAM_PROTOCOL_SCOPE_KEY = "inference_service.stream_protocol"


@dataclass(frozen=True)
class StreamProtocol:
    """How a relayed stream ends: where its last event is, and what ends a broken one; and
    the body of an error answered before it starts.

    OpenAI chat and completions streams end with ``data: [DONE]``. Anthropic Messages and
    OpenAI Responses streams are ``event: <name>`` + ``data:`` pairs ending with a terminal
    event; llama-server's native ``/infill`` stream ends with a ``"stop": true`` chunk. A
    relay that appended ``[DONE]`` to those would hand their clients a line they cannot
    parse, so each stream is relayed intact and ended its own way.
    """

    #: Offset just past the stream's last event in a run of complete events, or -1.
    end_of_last: Callable[[bytes], int]
    #: (message, code) -> the bytes that end a stream broken before its last event.
    error_ending: Callable[[str, str], bytes]
    #: The client's framing of the events, when it is not the upstream's own: each run of complete
    #: upstream events -> the bytes to send (Ollama's NDJSON lines). Stateful, so one per stream;
    #: None relays the events as they are. ``error_ending`` is in the client's framing already.
    reframe: Callable[[bytes], bytes] | None = None
    #: The stream's ``Content-Type``.
    content_type: bytes = SSE_CONTENT_TYPE


def _end_of_done(block: bytes) -> int:
    """Past ``data: [DONE]`` at the start of an event (a chunk's text may contain those very words)."""
    if block.startswith(DONE_LINE):
        start = 0
    elif (start := block.find(b"\n" + DONE_LINE)) < 0:
        return -1
    return block.find(b"\n\n", start + 1) + 2


def _end_of_first(is_last: Callable[[bytes], bool]) -> Callable[[bytes], int]:
    """``end_of_last`` for streams whose last event is recognised by looking at each event."""

    def end_of_last(block: bytes) -> int:
        end = 0
        for event in block.split(b"\n\n")[:-1]:
            end += len(event) + 2
            if is_last(event):
                return end
        return -1

    return end_of_last


def _event_name(event: bytes) -> bytes | None:
    event = event.lstrip(b"\n")
    return event[7:].split(b"\n", 1)[0].strip() if event.startswith(b"event: ") else None


def _named_events(
    terminal: set[bytes],
    error: Callable[[str, str], dict[str, Any]],
) -> StreamProtocol:
    return StreamProtocol(
        end_of_last=_end_of_first(lambda event: _event_name(event) in terminal | {b"error"}),
        error_ending=lambda message, code: (
            b"event: error\ndata: " + json.dumps(error(message, code)).encode() + b"\n\n"
        ),
    )


OPENAI = StreamProtocol(
    end_of_last=_end_of_done,
    error_ending=lambda message, code: error_event(message, code=code) + DONE,
)
ANTHROPIC = _named_events(
    {b"message_stop"},
    lambda message, code: {"type": "error", "error": {"type": "api_error", "message": message}},
)
OPENAI_RESPONSES = _named_events(
    {b"response.completed", b"response.failed", b"response.incomplete"},
    lambda message, code: {"type": "error", "code": code, "message": message, "param": None},
)
LLAMACPP_NATIVE = StreamProtocol(
    end_of_last=_end_of_first(
        lambda event: b'"stop":true' in event or event.lstrip(b"\n").startswith(b'data: {"error"')
    ),
    error_ending=lambda message, code: error_event(message, code=code),
)


#: In a run of events, what any event that reports usage contains (compact JSON, as llama-server
#: writes it): only the runs that contain it are parsed, the others cost one substring search.
USAGE_MARK = b'"usage":{'


def usage_in(payload: dict[str, Any]) -> object:
    """The usage one event reports, where its API puts it: ``response.usage`` (the Responses API's
    ``response.completed``), ``message.usage`` (Anthropic's ``message_start``: the input tokens),
    else ``usage`` (an OpenAI chunk; Anthropic's ``message_delta``: the output tokens)."""
    for holder in ("response", "message"):
        if isinstance(nested := payload.get(holder), dict):
            return nested.get("usage")
    return payload.get("usage")


def usages_in(run: bytes) -> Iterator[object]:
    """The usage of each event of a run of complete events that reports one, in any API's framing
    (``data: {...}``, or ``event: <name>`` then ``data: {...}``)."""
    for event in run.split(b"\n\n"):
        if USAGE_MARK in event and (data := event.find(b"data:")) >= 0:
            with contextlib.suppress(ValueError):
                payload = json.loads(event[data + 5 :])
                if isinstance(payload, dict):
                    yield usage_in(payload)


def wants_usage(body: dict[str, Any]) -> bool:
    """Whether an OpenAI chat stream's client asked for its usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def asking_usage(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat stream's body that asks for the usage chunk: without it the stream carries no
    token counts, and the router counts every call's tokens (metrics, the key's ledger, its limits)."""
    options = body.get("stream_options")
    return {**body, "stream_options": {**(options if isinstance(options, dict) else {}), "include_usage": True}}


def without_usage_chunk(run: bytes) -> bytes:
    """A run of OpenAI chat events without the usage chunk (no choices, only usage), for a client that
    did not ask for it (:func:`asking_usage` asked upstream): it reads ``choices[0]`` of every chunk."""
    if USAGE_MARK not in run:
        return run
    return b"".join(event + b"\n\n" for event in run.split(b"\n\n")[:-1] if not _is_usage_chunk(event))


#: :data:`OPENAI` for a chat stream whose usage chunk its client did not ask for (:func:`asking_usage`
#: asked upstream): the relay drops the chunk as it reframes each run - a plain call in its one
#: loop, a substring search for every run but the last.
OPENAI_HIDING_USAGE = replace(OPENAI, reframe=without_usage_chunk)


def _is_usage_chunk(event: bytes) -> bool:
    if USAGE_MARK not in event or not event.startswith(b"data:"):
        return False
    try:
        payload = json.loads(event[5:])
    except ValueError:
        return False
    return isinstance(payload, dict) and payload.get("choices") == []


async def relay_events(
    blocks: AsyncIterator[bytes],
    protocol: StreamProtocol,
    send: Callable[[bytes], Awaitable[None]],
    sent: list[bytes] | None = None,
) -> bool:
    """Send runs of complete events on until the protocol's last event; whether it came.

    Runs are sent as they came, one ``send`` each: the bytes are looked at (a substring
    search), never taken apart - unless the protocol reframes them for its client
    (``protocol.reframe``). ``sent`` collects each run as the upstream framed it, once it
    went out: what a resumed stream continues from (one ``append`` per run, read only if
    the upstream dies). An upstream that dies raises UpstreamUnreachable.
    """
    reframe = protocol.reframe
    async for block in blocks:
        end = protocol.end_of_last(block)
        run = block[:end] if end >= 0 else block
        out = reframe(run) if reframe is not None else run
        if out:
            await send(out)
        if sent is not None:
            sent.append(run)
        if end >= 0:
            return True
    return False


async def relay(
    blocks: AsyncIterator[bytes], protocol: StreamProtocol, send: Callable[[bytes], Awaitable[None]]
) -> None:
    """:func:`relay_events`, and whatever happens upstream, the client's stream ends the protocol's way.

    A stream that ends or breaks before its last event gets the protocol's error ending (for
    OpenAI an error event and the one ``data: [DONE]``).
    """
    try:
        if await relay_events(blocks, protocol, send):
            return
        await end_incomplete(protocol, send)
    except UpstreamUnreachable as error:
        await end_broken(protocol, send, error)


async def end_incomplete(protocol: StreamProtocol, send: Callable[[bytes], Awaitable[None]]) -> None:
    """End a stream whose upstream ended without its last event."""
    logger.warning("upstream stream ended without its last event")
    await send(protocol.error_ending("the model's stream ended unexpectedly", "stream_incomplete"))


async def end_broken(
    protocol: StreamProtocol, send: Callable[[bytes], Awaitable[None]], error: UpstreamUnreachable
) -> None:
    """End a stream whose upstream died mid-way (and was not resumed): the error in the protocol's framing."""
    logger.warning("upstream died mid-stream: %s", error)
    await send(protocol.error_ending(str(error), "upstream_died"))
