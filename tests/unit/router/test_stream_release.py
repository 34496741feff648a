"""A streaming call's admission slot does not depend on anyone starting to read the stream.

Real Settings, supervisor, dispatcher and aiohttp session in front of a real (raw asyncio)
SSE upstream, configured as a ``remote`` model with one slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.router.dispatch import Dispatcher
from inference_service.router.metrics import Metrics
from inference_service.router.upstream import UpstreamClient
from inference_service.runtimes.factory import runtime_factory
from inference_service.supervisor import Supervisor
from tests.unit.router.test_sse_relay import TOKEN, serve_chunks


@pytest.fixture
async def dispatcher() -> AsyncIterator[Dispatcher]:
    server, url = await serve_chunks([TOKEN, TOKEN, b"data: [DONE]\n\n"])
    settings = Settings(models={"m": {"runtime": "remote", "url": url, "parallel": 1}})
    supervisor = Supervisor(settings, runtime_factory(settings, Path("/nonexistent/llama-server")))
    upstream = UpstreamClient()
    await upstream.start()
    try:
        yield Dispatcher(settings, supervisor, upstream, Metrics())
    finally:
        await supervisor.close()
        await upstream.close()
        server.close()


async def test_closing_a_stream_never_read_frees_its_slot_at_once(dispatcher: Dispatcher) -> None:
    stream = await dispatcher.open_stream("m", "/v1/chat/completions", {"stream": True}, blocks=True)
    assert dispatcher.queues["m"].active == 1
    await stream.aclose()  # a generator closed before its first step would have skipped its cleanup
    assert dispatcher.queues["m"].active == 0


async def test_a_stream_read_to_the_end_frees_its_slot(dispatcher: Dispatcher) -> None:
    stream = await dispatcher.open_stream("m", "/v1/chat/completions", {"stream": True})
    events = [event async for event in stream]
    assert events == [TOKEN[:-2], TOKEN[:-2], b"data: [DONE]"]
    assert dispatcher.queues["m"].active == 0
    again = await asyncio.wait_for(dispatcher.open_stream("m", "/v1/chat/completions", {"stream": True}), 1)
    await again.aclose()
