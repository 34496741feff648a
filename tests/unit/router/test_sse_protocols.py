"""Streams that end with their own last event (Anthropic, Responses, llama-server's /infill) are
relayed intact and, when broken, end with the protocol's error event - never an OpenAI [DONE]."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator

import pytest

from inference_service.router.sse import ANTHROPIC, LLAMACPP_NATIVE, OPENAI_RESPONSES, StreamProtocol, relay_until_last
from inference_service.router.upstream import UpstreamUnreachable

START = b'event: message_start\ndata: {"type":"message_start"}'
STOP = b'event: message_stop\ndata: {"type":"message_stop"}'


async def _upstream(*events: bytes, then: Exception | None = None) -> AsyncGenerator[bytes, None]:
    for event in events:
        yield event
    if then is not None:
        raise then


async def _relayed(protocol: StreamProtocol, upstream: AsyncGenerator[bytes, None]) -> bytes:
    return b"".join([frame async for frame in relay_until_last(upstream, protocol)])


def _error_data(frame: bytes) -> dict[str, object]:
    event_line, data_line = frame.strip().split(b"\n")[-2:]
    assert event_line == b"event: error"
    return json.loads(data_line.removeprefix(b"data: "))


async def test_a_complete_anthropic_stream_is_relayed_byte_for_byte() -> None:
    assert await _relayed(ANTHROPIC, _upstream(START, STOP)) == START + b"\n\n" + STOP + b"\n\n"


async def test_nothing_after_the_last_event_is_relayed() -> None:
    assert await _relayed(ANTHROPIC, _upstream(START, STOP, b"data: [DONE]")) == START + b"\n\n" + STOP + b"\n\n"


async def test_an_anthropic_stream_cut_short_ends_with_an_anthropic_error_event() -> None:
    relayed = await _relayed(ANTHROPIC, _upstream(START))
    assert relayed.startswith(START + b"\n\n") and b"[DONE]" not in relayed
    assert _error_data(relayed)["error"]["type"] == "api_error"  # type: ignore[index]


async def test_an_upstream_death_ends_a_responses_stream_with_its_error_event() -> None:
    created = b'event: response.created\ndata: {"type":"response.created"}'
    relayed = await _relayed(OPENAI_RESPONSES, _upstream(created, then=UpstreamUnreachable("reset")))
    data = _error_data(relayed)
    assert data["type"] == "error" and data["code"] == "upstream_died" and "reset" in str(data["message"])


@pytest.mark.parametrize("last", [b'data: {"content":"","stop":true}', b'data: {"error":{"message":"x"}}'])
async def test_a_native_stream_ends_at_its_stop_chunk_or_error(last: bytes) -> None:
    partial = b'data: {"content":"a","stop":false}'
    relayed = await _relayed(LLAMACPP_NATIVE, _upstream(partial, last, b'data: {"late":1}'))
    assert relayed == partial + b"\n\n" + last + b"\n\n"
