"""The SSE framing of ``/v1/events`` over a real bus: ids, JSON data, the ``dropped`` count, unsubscribe."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import pytest

from inference_service.events import MODEL_STATE, REQUEST, EventBus, Subscription
from inference_service.router.api.events import _stream
from inference_service.router.proxy.stream import EventStream, Feed
from tests.unit.router.proxy.test_stream import Client, ends, serving

OpenStream = Callable[[EventBus, Subscription], AsyncGenerator[bytes, None]]


@pytest.fixture
async def open_stream() -> AsyncIterator[OpenStream]:
    """``_stream(bus, subscription)``; every stream opened is closed (unsubscribed) after the test."""
    opened: list[AsyncGenerator[bytes, None]] = []

    def open_(bus: EventBus, subscription: Subscription) -> AsyncGenerator[bytes, None]:
        opened.append(_stream(bus, subscription))
        return opened[-1]

    yield open_
    for frames in opened:
        await frames.aclose()


def _data(frame: bytes) -> dict[str, object]:
    lines = frame.decode().splitlines()
    assert lines[0].startswith("id: ") and lines[1].startswith("data: "), frame
    return json.loads(lines[1][len("data: ") :])


async def test_a_subscriber_that_fell_behind_is_told_how_many_events_it_lost(open_stream: OpenStream) -> None:
    bus = EventBus()
    frames = open_stream(bus, bus.subscribe(capacity=3))
    assert await anext(frames) == b": subscribed\n\n"
    for number in range(10):
        bus.publish(REQUEST, "a", number=number)
    first = _data(await anext(frames))
    second = _data(await anext(frames))
    assert (first["number"], first["dropped"]) == (7, 7)
    assert second["number"] == 8 and "dropped" not in second


async def test_event_frame_has_the_sequence_number_as_its_id(open_stream: OpenStream) -> None:
    bus = EventBus()
    frames = open_stream(bus, bus.subscribe())
    await anext(frames)
    event = bus.publish(MODEL_STATE, "a", state="loaded", reason=None)
    frame = await anext(frames)
    assert frame.startswith(f"id: {event.seq}\n".encode()) and frame.endswith(b"\n\n")
    assert _data(frame) == {
        "seq": event.seq,
        "type": "model_state",
        "time": event.time,
        "model": "a",
        "state": "loaded",
        "reason": None,
    }


async def test_closing_the_stream_unsubscribes() -> None:
    bus = EventBus()
    frames = _stream(bus, bus.subscribe())
    await anext(frames)
    assert bus.subscribers == 1
    with contextlib.suppress(StopAsyncIteration):
        await frames.aclose()
    assert bus.subscribers == 0


async def test_a_subscriber_that_hangs_up_as_an_event_arrives_is_unsubscribed() -> None:
    """The hang-up's cancellation reaches the stream while an event is ready for it (a busy
    bus): were it lost, the stream would live on writing into the void - the server drops
    sends to a connection that is gone - and the subscription would never be released."""
    bus, client = EventBus(), Client()
    async with serving(EventStream(Feed(_stream(bus, bus.subscribe()))), client) as running:
        while not client.bodies:
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)  # the stream settles into waiting for its next event
        bus.publish(REQUEST, "a")
        client.hung_up.set()  # in the same turn of the event loop

        assert await ends(running, within_s=5)
        assert bus.subscribers == 0
