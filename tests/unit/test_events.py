"""The event bus: filtering, ordering, and a slow subscriber that drops instead of blocking."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.events import CONFIG_RELOAD, MODEL_STATE, REQUEST, Event, EventBus


async def test_subscriber_receives_matching_events_in_order() -> None:
    bus = EventBus()
    subscription = bus.subscribe(models=["a"], types=[MODEL_STATE])
    bus.publish(MODEL_STATE, "a", state="loading")
    bus.publish(MODEL_STATE, "b", state="loading")
    bus.publish(REQUEST, "a", status=200)
    bus.publish(MODEL_STATE, "a", state="loaded")
    first, _ = await subscription.next()
    second, _ = await subscription.next()
    assert [(first.model, first.data["state"]), (second.model, second.data["state"])] == [
        ("a", "loading"),
        ("a", "loaded"),
    ]
    assert second.seq > first.seq


async def test_full_buffer_drops_oldest_and_reports_the_count() -> None:
    bus = EventBus()
    subscription = bus.subscribe(capacity=3)
    for number in range(10):
        bus.publish(REQUEST, "a", number=number)
    event, dropped = await subscription.next()
    assert (event.data["number"], dropped) == (7, 7)
    assert event.as_dict(dropped)["dropped"] == 7


async def test_next_waits_for_a_publish() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    waiter = asyncio.create_task(subscription.next())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    bus.publish(REQUEST, "a")
    event, dropped = await asyncio.wait_for(waiter, 1.0)
    assert (event.type, dropped) == (REQUEST, 0)


def test_unsubscribed_listener_gets_nothing() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    bus.unsubscribe(subscription)
    bus.publish(REQUEST, "a")
    assert bus.subscribers == 0


def test_a_listener_that_raises_is_logged_and_counted_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    heard: list[int] = []

    def broken(event: Event) -> None:
        raise RuntimeError("a bug in a listener")

    bus.listen(broken)
    bus.listen(lambda event: heard.append(event.seq))

    published = bus.publish(MODEL_STATE, "a", state="loading")  # does not raise

    assert heard == [published.seq] and bus.listener_errors == 1
    assert "a bug in a listener" in caplog.text


def test_a_keys_subscription_gets_only_its_own_request_events() -> None:
    bus = EventBus()
    subscription = bus.subscribe(key="batch")
    bus.publish(REQUEST, "a", key="other", path="/v1/chat/completions")
    bus.publish(REQUEST, None, key="other", path="/v1/chat/completions")  # no model: before it was resolved
    own = bus.publish(REQUEST, "a", key="batch", path="/v1/chat/completions")
    assert list(subscription._buffer) == [own]


def test_a_keys_subscription_gets_the_events_of_models_but_no_service_wide_one() -> None:
    """A service-wide event (a config reload's) may name anything - a rejected reload's reason names
    the key whose secret is missing - so a key's view keeps the events about a model only."""
    bus = EventBus()
    subscription = bus.subscribe(key="batch")
    bus.publish(CONFIG_RELOAD, ok=False, trigger="api", reason="keys.ops.key: environment variable OPS is not set")
    state = bus.publish(MODEL_STATE, "a", state="loaded")
    assert list(subscription._buffer) == [state]


def test_a_subscription_for_every_key_gets_every_event() -> None:
    bus = EventBus()
    subscription = bus.subscribe()
    published = [bus.publish(REQUEST, "a", key="other"), bus.publish(CONFIG_RELOAD, ok=True, trigger="api")]
    assert list(subscription._buffer) == published
