"""Every relayed stream ends its own protocol's way: OpenAI streams with one ``[DONE]``, streams
with a last event of their own (Anthropic, Responses, llama-server's /infill) intact and, when
broken, with the protocol's error event - never an OpenAI [DONE]. Runs of events are relayed
as they came, however the upstream's reads cut them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from inference_service.router.proxy.sse import (
    ANTHROPIC,
    DONE,
    LLAMACPP_NATIVE,
    OPENAI,
    OPENAI_RESPONSES,
    StreamProtocol,
    relay,
    usages_in,
    without_usage_chunk,
)
from inference_service.router.proxy.upstream import MAX_EVENT_BYTES, UpstreamUnreachable, sse_blocks

START = b'event: message_start\ndata: {"type":"message_start"}\n\n'
STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'


async def _reads(*reads: bytes, then: Exception | None = None) -> AsyncIterator[bytes]:
    for read in reads:
        yield read
    if then is not None:
        raise then


async def _relayed(protocol: StreamProtocol, reads: AsyncIterator[bytes]) -> list[bytes]:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    await relay(sse_blocks(reads), protocol, send)
    return sent


def _error_data(frame: bytes) -> dict[str, object]:
    event_line, data_line = frame.strip().split(b"\n")[-2:]
    assert event_line == b"event: error"
    return json.loads(data_line.removeprefix(b"data: "))


async def test_an_openai_stream_is_relayed_one_send_per_read_and_ends_at_done() -> None:
    assert await _relayed(OPENAI, _reads(CHUNK, CHUNK + DONE)) == [CHUNK, CHUNK + DONE]


async def test_nothing_after_done_is_relayed_even_in_the_same_read() -> None:
    assert b"".join(await _relayed(OPENAI, _reads(CHUNK + DONE + CHUNK + DONE))) == CHUNK + DONE


async def test_a_chunk_whose_text_says_data_done_does_not_end_the_stream() -> None:
    tricky = b'data: {"choices":[{"delta":{"content":"data: [DONE]"}}]}\n\n'
    assert b"".join(await _relayed(OPENAI, _reads(tricky, CHUNK + DONE))) == tricky + CHUNK + DONE


async def test_an_event_cut_across_reads_is_sent_once_complete() -> None:
    assert await _relayed(OPENAI, _reads(CHUNK[:10], CHUNK[10:] + DONE[:5], DONE[5:])) == [CHUNK, DONE]


async def test_crlf_line_ends_are_relayed_as_lf() -> None:
    crlf = CHUNK.replace(b"\n", b"\r\n")
    assert b"".join(await _relayed(OPENAI, _reads(crlf[:-1], crlf[-1:] + DONE))) == CHUNK + DONE


async def test_an_openai_stream_without_done_ends_with_an_error_event_and_done() -> None:
    sent = await _relayed(OPENAI, _reads(CHUNK))
    assert sent[0] == CHUNK and sent[-1].endswith(DONE)
    assert json.loads(sent[-1].split(b"\n\n")[0].removeprefix(b"data: "))["error"]["code"] == "stream_incomplete"


async def test_an_upstream_death_ends_an_openai_stream_with_upstream_died_and_done() -> None:
    sent = await _relayed(OPENAI, _reads(CHUNK, then=UpstreamUnreachable("reset")))
    error = json.loads(sent[-1].split(b"\n\n")[0].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_died" and "reset" in error["message"] and sent[-1].endswith(DONE)


async def test_a_runtime_that_never_ends_an_event_breaks_the_stream_instead_of_filling_memory() -> None:
    endless = (b"data: " + b"x" * 2**20 for _ in range(MAX_EVENT_BYTES // 2**20 + 2))
    sent = await _relayed(OPENAI, _reads(CHUNK, *endless))
    assert sent[0] == CHUNK and sent[-1].endswith(DONE)
    error = json.loads(sent[-1].split(b"\n\n")[0].removeprefix(b"data: "))["error"]
    assert error["code"] == "upstream_died" and "without ending an event" in error["message"]


async def test_a_complete_anthropic_stream_is_relayed_byte_for_byte() -> None:
    assert b"".join(await _relayed(ANTHROPIC, _reads(START, STOP))) == START + STOP


async def test_nothing_after_the_last_event_is_relayed() -> None:
    assert b"".join(await _relayed(ANTHROPIC, _reads(START + STOP + DONE))) == START + STOP


async def test_an_anthropic_stream_cut_short_ends_with_an_anthropic_error_event() -> None:
    relayed = b"".join(await _relayed(ANTHROPIC, _reads(START)))
    assert relayed.startswith(START) and b"[DONE]" not in relayed
    assert _error_data(relayed)["error"]["type"] == "api_error"  # type: ignore[index]


async def test_an_upstream_death_ends_a_responses_stream_with_its_error_event() -> None:
    created = b'event: response.created\ndata: {"type":"response.created"}\n\n'
    relayed = b"".join(await _relayed(OPENAI_RESPONSES, _reads(created, then=UpstreamUnreachable("reset"))))
    data = _error_data(relayed)
    assert data["type"] == "error" and data["code"] == "upstream_died" and "reset" in str(data["message"])


@pytest.mark.parametrize("last", [b'data: {"content":"","stop":true}\n\n', b'data: {"error":{"message":"x"}}\n\n'])
async def test_a_native_stream_ends_at_its_stop_chunk_or_error(last: bytes) -> None:
    partial = b'data: {"content":"a","stop":false}\n\n'
    assert b"".join(await _relayed(LLAMACPP_NATIVE, _reads(partial, last + b'data: {"late":1}\n\n'))) == partial + last


def _reframed(prefix: bytes) -> StreamProtocol:
    """OPENAI's end, each run sent in another framing (as Ollama's NDJSON is)."""
    return StreamProtocol(
        end_of_last=OPENAI.end_of_last,
        error_ending=lambda message, code: b"ending:" + code.encode(),
        reframe=lambda block: prefix + block if b"content" in block or DONE in block else b"",
    )


async def test_a_reframed_stream_sends_the_clients_framing_up_to_the_upstreams_last_event() -> None:
    sent = await _relayed(_reframed(b"framed:"), _reads(CHUNK, b'data: {"choices":[]}\n\n' + DONE + CHUNK))
    assert sent == [b"framed:" + CHUNK, b"framed:" + b'data: {"choices":[]}\n\n' + DONE]


async def test_a_reframed_stream_cut_short_ends_with_the_error_ending_as_it_is() -> None:
    sent = await _relayed(_reframed(b"framed:"), _reads(CHUNK, then=UpstreamUnreachable("gone")))
    assert sent == [b"framed:" + CHUNK, b"ending:upstream_died"]


# The usage events as llama-server streams them (compact JSON), fields trimmed.
ANTHROPIC_USAGE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"role":"assistant",'
    b'"usage":{"input_tokens":31,"output_tokens":0}}}\n\n'
    + CHUNK.replace(b"data:", b"event: x\ndata:")
    + b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":4}}\n\n'
    + STOP
)
RESPONSES_USAGE = (
    b'event: response.completed\ndata: {"type":"response.completed","response":{"status":"completed",'
    b'"usage":{"input_tokens":31,"output_tokens":4,"total_tokens":35}}}\n\n'
)
USAGE_CHUNK = b'data: {"choices":[],"usage":{"completion_tokens":4,"prompt_tokens":31}}\n\n'


def test_each_apis_stream_usage_is_read_where_the_api_puts_it() -> None:
    assert list(usages_in(ANTHROPIC_USAGE)) == [{"input_tokens": 31, "output_tokens": 0}, {"output_tokens": 4}]
    assert list(usages_in(RESPONSES_USAGE)) == [{"input_tokens": 31, "output_tokens": 4, "total_tokens": 35}]
    assert list(usages_in(CHUNK + USAGE_CHUNK + DONE)) == [{"completion_tokens": 4, "prompt_tokens": 31}]


def test_the_usage_chunk_a_client_did_not_ask_for_is_dropped_and_nothing_else() -> None:
    with_usage_in_choices = b'data: {"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}\n\n'

    assert without_usage_chunk(CHUNK + USAGE_CHUNK + DONE) == CHUNK + DONE
    assert without_usage_chunk(USAGE_CHUNK) == b""
    assert without_usage_chunk(with_usage_in_choices + DONE) == with_usage_in_choices + DONE
