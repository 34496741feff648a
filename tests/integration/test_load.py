"""AC-21.5 - concurrent load: bursts of 5/10/15, concurrent streams, and a 50-request flood.

Under overload the service may refuse work, but only as a 503 carrying ``Retry-After``
(its admission queue is full) - never a 500 and never a hang. The test config gives each
model 4 slots and a 16-deep queue, so 15 concurrent requests all fit while a flood of 50
overflows it.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.integration.conftest import REQUEST_TIMEOUT_S, ChatRequestFactory, SSEParser, post_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.requires_model]

CHAT = "/v1/chat/completions"


async def _burst(http: httpx.AsyncClient, count: int, max_tokens: int = 4) -> list[httpx.Response]:
    """``count`` distinct requests sent at once (distinct prompts, so no answer can come from a cache)."""
    requests = [ChatRequestFactory.simple(message=f"Say the number {n}.", max_tokens=max_tokens) for n in range(count)]
    return list(await asyncio.gather(*(http.post(CHAT, json=request, timeout=REQUEST_TIMEOUT_S) for request in requests)))


@pytest.mark.parametrize("concurrency", [5, 15])
async def test_concurrent_requests_all_succeed(async_client: httpx.AsyncClient, skip_if_no_models: None, concurrency: int) -> None:
    responses = await _burst(async_client, concurrency)
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * concurrency, statuses
    assert len({response.json()["id"] for response in responses}) == concurrency, "completions share an id"


async def test_ten_concurrent_requests_complete_within_timeout(async_client: httpx.AsyncClient, skip_if_no_models: None) -> None:
    """Exit criterion: 10 concurrent requests all succeed, the whole burst inside INTEGRATION_TEST_TIMEOUT."""
    started = time.monotonic()
    responses = await _burst(async_client, 10)
    elapsed = time.monotonic() - started
    assert [response.status_code for response in responses] == [200] * 10
    assert elapsed < REQUEST_TIMEOUT_S, f"10 concurrent requests took {elapsed:.1f}s"


async def test_concurrent_streams_each_end_with_done(
    async_client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory], sse_parser: type[SSEParser]
) -> None:
    """Five interleaved streams: each gets its own complete, correctly terminated event sequence."""
    requests = [chat_request_factory.streaming(message=f"Count from {n} upwards.", max_tokens=6) for n in range(5)]
    results = await asyncio.gather(*(post_stream(async_client, CHAT, request) for request in requests))
    for response, raw in results:
        assert response.status_code == 200
        assert raw.endswith(b"data: [DONE]\n\n")
        chunks = sse_parser.parse_stream(raw.decode())
        assert len({chunk["id"] for chunk in chunks}) == 1, "one stream carries chunks of another completion"
        assert sse_parser.extract_content(chunks).strip()


async def test_flood_of_50_requests_yields_only_200_or_503_with_retry_after(
    async_client: httpx.AsyncClient, skip_if_no_models: None
) -> None:
    responses = await _burst(async_client, 50, max_tokens=4)
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 503}, f"statuses under flood: {statuses}"
    assert 200 in statuses, "the flood starved every request"
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["error"]["code"] in ("queue_full", "queue_timeout")


async def test_service_serves_normally_after_a_flood(
    async_client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """Refused work leaves nothing behind: once a flood is over, slots are free again."""
    await _burst(async_client, 30, max_tokens=1)  # 30 > 4 slots + 16 queued: overflows too
    ready = await async_client.get("/health/ready")
    assert ready.status_code == 200
    response = await async_client.post(CHAT, json=chat_request_factory.simple(max_tokens=4))
    assert response.status_code == 200, response.text
    in_flight = {card["id"]: card["in_flight"] for card in (await async_client.get("/v1/models")).json()["data"]}
    assert set(in_flight.values()) == {0}, f"requests still in flight after the flood: {in_flight}"
