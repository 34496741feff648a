"""AC-21.2 - Server-Sent Events: framing checked on the raw bytes, chunks parsed and validated."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.conftest import ChatRequestFactory, ResponseValidator, SSEParser, post_stream

pytestmark = [pytest.mark.integration]

DONE_FRAME = b"data: [DONE]\n\n"


@pytest.mark.requires_model
async def test_stream_is_served_as_event_stream(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    response, _ = await post_stream(client, "/v1/chat/completions", chat_request_factory.streaming(max_tokens=4))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers.get("cache-control") == "no-cache"


@pytest.mark.requires_model
async def test_sse_chunks_end_with_done(
    client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """Exit criterion: the raw stream ends with exactly one ``data: [DONE]\\n\\n``, and every event
    before it is a ``data:`` line closed by a blank line."""
    response, raw = await post_stream(client, "/v1/chat/completions", chat_request_factory.streaming(max_tokens=8))
    assert response.status_code == 200
    assert raw.endswith(DONE_FRAME), f"stream ends with {raw[-40:]!r}"
    assert raw.count(b"data: [DONE]") == 1
    events = raw.split(b"\n\n")
    assert events[-1] == b"", "last event not terminated by a blank line"
    assert all(event.startswith(b"data: ") for event in events[:-1]), "an event is not a data: line"


@pytest.mark.requires_model
async def test_every_stream_chunk_is_a_valid_completion_chunk(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
    sse_parser: type[SSEParser],
) -> None:
    _, raw = await post_stream(client, "/v1/chat/completions", chat_request_factory.streaming(max_tokens=8))
    chunks = sse_parser.parse_stream(raw.decode())
    assert chunks, "no chunks before [DONE]"
    for chunk in chunks:
        response_validator.validate_streaming_chunk(chunk)
    assert len({chunk["id"] for chunk in chunks}) == 1, "chunks of one completion carry different ids"


@pytest.mark.requires_model
async def test_streamed_tokens_form_the_answer(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    sse_parser: type[SSEParser],
) -> None:
    """Content arrives as several deltas (token by token), not as one block."""
    _, raw = await post_stream(client, "/v1/chat/completions", chat_request_factory.streaming(max_tokens=8))
    chunks = sse_parser.parse_stream(raw.decode())
    content_chunks = [chunk for chunk in chunks if sse_parser.extract_content([chunk])]
    assert len(content_chunks) >= 2, f"only {len(content_chunks)} content deltas"
    assert sse_parser.extract_content(chunks).strip()


@pytest.mark.requires_model
async def test_stream_finishes_with_a_finish_reason(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    sse_parser: type[SSEParser],
) -> None:
    _, raw = await post_stream(client, "/v1/chat/completions", chat_request_factory.streaming(max_tokens=4))
    reasons = [
        choice.get("finish_reason") for chunk in sse_parser.parse_stream(raw.decode()) for choice in chunk["choices"]
    ]
    assert reasons[-1] in ("stop", "length"), f"last finish_reason {reasons[-1]!r}"
    assert all(reason is None for reason in reasons[:-1]), "finish_reason before the last chunk"


@pytest.mark.requires_model
async def test_stream_reports_usage_when_asked(
    client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    response_validator: type[ResponseValidator],
    sse_parser: type[SSEParser],
) -> None:
    request = chat_request_factory.streaming(max_tokens=6, stream_options={"include_usage": True})
    _, raw = await post_stream(client, "/v1/chat/completions", request)
    with_usage = [chunk for chunk in sse_parser.parse_stream(raw.decode()) if chunk.get("usage")]
    assert len(with_usage) == 1, f"{len(with_usage)} chunks carry usage"
    response_validator.validate_usage(with_usage[0], max_completion_tokens=6)


async def test_streaming_unknown_model_returns_json_404_not_a_stream(
    client: httpx.AsyncClient, skip_if_service_unavailable: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """An error known before the first byte is an ordinary JSON error, never a 200 stream."""
    response, raw = await post_stream(
        client, "/v1/chat/completions", chat_request_factory.streaming(model="no-such-model-xyz")
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert b"data:" not in raw
    assert json.loads(raw)["error"]["code"] == "model_not_found"


async def test_streaming_with_empty_messages_returns_json_4xx(
    client: httpx.AsyncClient, skip_if_service_unavailable: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    request = {**chat_request_factory.streaming(), "messages": []}
    response, raw = await post_stream(client, "/v1/chat/completions", request)
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/json")
    assert b"data:" not in raw
