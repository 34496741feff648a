"""AC-21.5 - concurrent load: bursts of 5/10/15, concurrent streams, and a 50-request flood.

Under overload the service may refuse work, but only as a 503 carrying ``Retry-After``
(its admission queue is full) - never a 500 and never a hang. The test config gives each
model 4 slots and a 16-deep queue, so 15 concurrent requests all fit; the flood tests hold
every slot with streams first, so their overflow is certain, not a matter of timing. (They
read the slot and queue sizes from config.toml: against your own deployment, keep them in
step with its config.)
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import FAST_MODEL, REQUEST_TIMEOUT_S, ChatRequestFactory, SSEParser, post_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.requires_model]

CHAT = "/v1/chat/completions"
SUITE_CONFIG = Path(__file__).with_name("config.toml")
#: Long enough that a held slot cannot free itself during a test (the slot's context fits it).
HELD_TOKENS = 1500
#: How many requests of a flood go beyond the held slots and the full queue.
FLOOD_OVERFLOW = 14


def _admission(model_name: str) -> tuple[int, int]:
    """``parallel`` and ``queue_size`` of the model serving ``model_name``, from the suite's config.toml."""
    config = tomllib.loads(SUITE_CONFIG.read_text())
    table = next(
        table for model_id, table in config["models"].items() if model_name in (model_id, *table.get("aliases", []))
    )
    return table["parallel"], table.get("queue_size", config["queue_size"])


async def _until_done(tasks: list[asyncio.Future[Any]], count: int, timeout_s: float = 60.0) -> None:
    """Wait until ``count`` of ``tasks`` have finished (the first refusal, then the slots are let go)."""
    deadline = time.monotonic() + timeout_s
    while sum(task.done() for task in tasks) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)


#: Long enough that decoding, which the parallel slots batch, outweighs per-request overhead.
LOAD_TOKENS = 32


async def _burst(http: httpx.AsyncClient, count: int, max_tokens: int = 4) -> list[httpx.Response]:
    """``count`` distinct requests sent at once (distinct prompts, so no answer can come from a cache)."""
    requests = [ChatRequestFactory.simple(message=f"Say the number {n}.", max_tokens=max_tokens) for n in range(count)]
    return list(
        await asyncio.gather(*(http.post(CHAT, json=request, timeout=REQUEST_TIMEOUT_S) for request in requests))
    )


@pytest.mark.parametrize("concurrency", [5, 15])
async def test_concurrent_requests_all_succeed(
    async_client: httpx.AsyncClient, skip_if_no_models: None, concurrency: int
) -> None:
    responses = await _burst(async_client, concurrency)
    statuses = [response.status_code for response in responses]
    assert statuses == [200] * concurrency, statuses
    assert len({response.json()["id"] for response in responses}) == concurrency, "completions share an id"


async def test_ten_concurrent_requests_complete_faster_than_one_after_another(
    async_client: httpx.AsyncClient, skip_if_no_models: None
) -> None:
    """Exit criterion: 10 concurrent requests all succeed - and the burst, served by the
    model's parallel slots, takes less than 10 requests of the same size sent one after
    another. Both ways run twice, in A B B A order, so a machine that gets busier or quieter
    during the test (other work on the box) weighs on both sides alike; distinct prompts, no cache."""

    def request(n: int) -> dict[str, Any]:
        return ChatRequestFactory.simple(message=f"Say the number {n}.", max_tokens=LOAD_TOKENS, ignore_eos=True)

    async def one_after_another(first: int) -> float:
        started = time.monotonic()
        for n in range(first, first + 10):
            response = await async_client.post(CHAT, json=request(n))
            assert response.status_code == 200, response.text
        return time.monotonic() - started

    async def all_at_once(first: int) -> float:
        started = time.monotonic()
        responses = await asyncio.gather(*(async_client.post(CHAT, json=request(n)) for n in range(first, first + 10)))
        elapsed = time.monotonic() - started
        assert [response.status_code for response in responses] == [200] * 10
        return elapsed

    sequential_s = await one_after_another(100)
    concurrent_s = await all_at_once(200)
    concurrent_s += await all_at_once(300)
    sequential_s += await one_after_another(400)
    assert concurrent_s < sequential_s, (
        f"2 x 10 concurrent requests took {concurrent_s:.2f}s, 2 x 10 one after another {sequential_s:.2f}s"
    )


async def test_concurrent_streams_each_end_with_done(
    async_client: httpx.AsyncClient,
    skip_if_no_models: None,
    chat_request_factory: type[ChatRequestFactory],
    sse_parser: type[SSEParser],
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


@asynccontextmanager
async def slots_held(http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Every slot of FAST_MODEL busy with a stream that cannot end by itself, until the block exits."""
    parallel, _ = _admission(FAST_MODEL)
    body = ChatRequestFactory.streaming(message="Count to one thousand.", max_tokens=HELD_TOKENS, ignore_eos=True)
    async with AsyncExitStack() as stack:
        for _ in range(parallel):
            response = await stack.enter_async_context(http.stream("POST", CHAT, json=body))
            assert response.status_code == 200
            await anext(aiter(response.aiter_lines()))  # admitted upstream: the slot is taken
        yield


async def _flood_while_slots_are_held(http: httpx.AsyncClient, max_tokens: int) -> list[httpx.Response]:
    """The queue's worth of requests plus FLOOD_OVERFLOW more, while every slot is held: the
    overflow is refused at once, the rest wait in the queue until the held streams end."""
    _, queue_size = _admission(FAST_MODEL)
    async with slots_held(http):
        requests = [
            ChatRequestFactory.simple(message=f"Say the number {n}.", max_tokens=max_tokens)
            for n in range(queue_size + FLOOD_OVERFLOW)
        ]
        flood = [
            asyncio.ensure_future(http.post(CHAT, json=request, timeout=REQUEST_TIMEOUT_S)) for request in requests
        ]
        await _until_done(flood, 1)  # nothing can finish but a refusal while the slots are held
    return list(await asyncio.gather(*flood))


async def test_flood_beyond_slots_and_queue_yields_only_200_or_503_with_retry_after(
    async_client: httpx.AsyncClient, skip_if_no_models: None
) -> None:
    """With every slot held, a flood larger than the queue must overflow: the overflow gets 503
    ``queue_full`` with ``Retry-After`` at once, the queued rest 200 once the slots free up."""
    responses = await _flood_while_slots_are_held(async_client, max_tokens=4)
    statuses = [response.status_code for response in responses]
    assert sorted(set(statuses)) == [200, 503], statuses
    for response in responses:
        if response.status_code == 503:
            assert int(response.headers["retry-after"]) > 0
            assert response.json()["error"]["code"] == "queue_full"


async def test_service_serves_normally_after_a_flood(
    async_client: httpx.AsyncClient, skip_if_no_models: None, chat_request_factory: type[ChatRequestFactory]
) -> None:
    """Refused work leaves nothing behind: once a flood is over, slots are free again."""
    assert 503 in [response.status_code for response in await _flood_while_slots_are_held(async_client, max_tokens=1)]
    ready = await async_client.get("/health/ready")
    assert ready.status_code == 200
    response = await async_client.post(CHAT, json=chat_request_factory.simple(max_tokens=4))
    assert response.status_code == 200, response.text
    in_flight = {card["id"]: card["in_flight"] for card in (await async_client.get("/v1/models")).json()["data"]}
    assert set(in_flight.values()) == {0}, f"requests still in flight after the flood: {in_flight}"
