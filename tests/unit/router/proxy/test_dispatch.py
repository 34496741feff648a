"""The dispatcher's admission and ledger, over fake runtimes: what a call holds and what it counts.

The garbage collector is off in these tests (the service freezes it with high thresholds): what a
cancelled or failed call held must be given back by the code itself, at once.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from inference_service.router.database import Database
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.upstream import UpstreamClient, UpstreamReply
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy.ledger import UsageLedger
from inference_service.runtimes.base import Endpoint
from tests.support.configs import eventually
from tests.unit.router.conftest import MakeHarness, read_request
from tests.unit.router.proxy.test_upstream_reply_cap import LIMIT, replying
from tests.unit.supervisor.fakes import Harness

pytestmark = pytest.mark.timeout(30)
CHAT = "/v1/chat/completions"


@pytest.fixture(autouse=True)
def no_garbage_collector() -> Iterator[None]:
    gc.disable()
    yield
    gc.enable()


def held(harness: Harness, dispatcher: Dispatcher, model_id: str) -> tuple[int, int, int]:
    """What requests hold of ``model_id``: leases (waiting, in flight) and admission slots in use."""
    status = harness.supervisor.status(model_id)
    return status.waiting, status.in_flight, dispatcher.queues[model_id].active


def parallel_one(harnesses: MakeHarness) -> Harness:
    harness = harnesses(["m"])
    harness.settings.models["m"].parallel = 1
    return harness


async def test_a_stream_cancelled_while_its_model_loads_gives_back_its_lease_and_slot_at_once(
    harnesses: MakeHarness,
) -> None:
    harness = parallel_one(harnesses)
    harness.runtimes["m"].gate = asyncio.Event()  # the load hangs until released
    dispatcher = Dispatcher(harness.settings, harness.supervisor, UpstreamClient(), Metrics())
    opening = asyncio.create_task(dispatcher.open_stream("m", CHAT, {"messages": [], "stream": True}))
    await eventually(lambda: held(harness, dispatcher, "m") == (1, 0, 1))  # leased, slot granted, loading

    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening

    assert held(harness, dispatcher, "m") == (0, 0, 0)


async def test_a_stream_cancelled_while_queued_for_a_slot_gives_back_its_lease_at_once(
    harnesses: MakeHarness,
) -> None:
    harness = parallel_one(harnesses)
    dispatcher = Dispatcher(harness.settings, harness.supervisor, UpstreamClient(), Metrics())
    async with dispatcher.admitted("m"):  # the only slot is taken
        opening = asyncio.create_task(dispatcher.open_stream("m", CHAT, {"messages": [], "stream": True}))
        await eventually(lambda: dispatcher.queues["m"].waiting == 1)

        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening

        assert (held(harness, dispatcher, "m"), dispatcher.queues["m"].waiting) == ((0, 1, 1), 0)


class RedirectedUpstream(UpstreamClient):
    """A real upstream client whose every call goes to ``base_url`` (the fake runtimes' endpoints lead nowhere)."""

    def __init__(self, base_url: str, max_reply_bytes: int = 256 * 2**20) -> None:
        super().__init__(connect_timeout_s=2.0, max_reply_bytes=max_reply_bytes)
        self.base_url = base_url

    async def post(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> UpstreamReply:
        return await super().post(Endpoint(self.base_url, endpoint.model_name), path, body, request_id)

    async def open_stream(
        self, endpoint: Endpoint, path: str, body: Mapping[str, Any], request_id: str | None = None
    ) -> aiohttp.ClientResponse:
        return await super().open_stream(Endpoint(self.base_url, endpoint.model_name), path, body, request_id)


@asynccontextmanager
async def failing_runtime() -> AsyncIterator[str]:
    """An HTTP server that answers every request 500 with an OpenAI-shaped error: its base URL."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        body = b'{"error": {"message": "boom", "type": "server_error"}}'
        writer.write(b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n")
        writer.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@asynccontextmanager
async def counted_dispatcher(
    harness: Harness, base_url: str, tmp_path: Path, max_reply_bytes: int = 256 * 2**20
) -> AsyncIterator[tuple[Dispatcher, UsageLedger]]:
    """A dispatcher over a real upstream client to ``base_url`` and a real ledger (never flushed: its pending rows are read)."""
    metrics = Metrics()
    ledger = UsageLedger(Database(tmp_path / "usage.db"), metrics)
    upstream = RedirectedUpstream(base_url, max_reply_bytes)
    await upstream.start()
    try:
        yield Dispatcher(harness.settings, harness.supervisor, upstream, metrics, ledger), ledger
    finally:
        await upstream.close()


async def test_a_stream_answered_with_an_error_status_counts_an_error_in_the_ledger_as_a_call_does(
    harnesses: MakeHarness, tmp_path: Path
) -> None:
    async with (
        failing_runtime() as base_url,
        counted_dispatcher(harnesses(["m"]), base_url, tmp_path) as (
            dispatcher,
            ledger,
        ),
    ):
        reply = await dispatcher.post("m", CHAT, {"messages": []})
        with pytest.raises(APIError):
            await dispatcher.open_stream("m", CHAT, {"messages": [], "stream": True})
        usage = ledger.pending("m")

    assert (reply.status, usage.requests, usage.errors) == (500, 2, 2)


async def test_a_stream_whose_runtime_does_not_answer_counts_an_error_in_the_ledger(
    harnesses: MakeHarness, tmp_path: Path
) -> None:
    async with failing_runtime() as base_url:
        pass  # closed: nothing listens there any more
    async with counted_dispatcher(harnesses(["m"]), base_url, tmp_path) as (dispatcher, ledger):
        with pytest.raises(APIError) as refused:
            await dispatcher.open_stream("m", CHAT, {"messages": [], "stream": True})
        usage = ledger.pending("m")

    assert (refused.value.code, usage.requests, usage.errors) == ("upstream_unavailable", 1, 1)


async def test_a_streams_error_answer_is_read_only_up_to_max_reply_bytes(
    harnesses: MakeHarness, tmp_path: Path
) -> None:
    async with (
        replying(100 * LIMIT, chunked=True, status=b"500 Internal Server Error") as endpoint,
        counted_dispatcher(harnesses(["m"]), endpoint.base_url, tmp_path, max_reply_bytes=LIMIT) as (dispatcher, _),
    ):
        with pytest.raises(APIError) as refused:
            await dispatcher.open_stream("m", CHAT, {"messages": [], "stream": True})

    assert (refused.value.status, refused.value.message) == (
        500,
        f"the reply exceeds {LIMIT:,} bytes (max_reply_bytes)",
    )
