"""The SSE framing of ``/v1/events`` over a real bus: ids, JSON data, the ``dropped`` count, unsubscribe."""

from __future__ import annotations

import contextlib
import json

from inference_service.events import MODEL_STATE, REQUEST, EventBus
from inference_service.router.api.events import _stream


def _data(frame: bytes) -> dict[str, object]:
    lines = frame.decode().splitlines()
    assert lines[0].startswith("id: ") and lines[1].startswith("data: "), frame
    return json.loads(lines[1][len("data: ") :])


async def test_a_subscriber_that_fell_behind_is_told_how_many_events_it_lost() -> None:
    bus = EventBus()
    subscription = bus.subscribe(capacity=3)
    frames = _stream(bus, subscription)
    assert await anext(frames) == b": subscribed\n\n"
    for number in range(10):
        bus.publish(REQUEST, "a", number=number)
    first = _data(await anext(frames))
    second = _data(await anext(frames))
    assert (first["number"], first["dropped"]) == (7, 7)
    assert second["number"] == 8 and "dropped" not in second
    await frames.aclose()


async def test_event_frame_has_the_sequence_number_as_its_id() -> None:
    bus = EventBus()
    frames = _stream(bus, bus.subscribe())
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
    await frames.aclose()


async def test_closing_the_stream_unsubscribes() -> None:
    bus = EventBus()
    frames = _stream(bus, bus.subscribe())
    await anext(frames)
    assert bus.subscribers == 1
    with contextlib.suppress(StopAsyncIteration):
        await frames.aclose()
    assert bus.subscribers == 0
