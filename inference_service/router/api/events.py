"""``GET /v1/events``: the event bus as Server-Sent Events.

Each subscriber gets its own bounded buffer on the bus: a slow reader loses its oldest
unread events (the next event it does get says how many, as ``dropped``) and never
slows the router down. A comment line every :data:`KEEPALIVE_S` keeps idle proxies from
closing the stream; a client that goes away is noticed at once (see proxy/stream.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator

from fastapi import APIRouter, Query, Request

from inference_service.events import EVENT_TYPES, EventBus, Subscription
from inference_service.router.proxy.stream import EventStream, Feed
from inference_service.router.services import services
from inference_service.router.serving.errors import APIError
from inference_service.router.serving.inflight import mark_feed
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

KEEPALIVE_S = 15.0
#: Events a subscriber may fall behind by before the oldest are dropped.
SUBSCRIBER_BUFFER = 1000


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


async def _stream(bus: EventBus, subscription: Subscription) -> AsyncGenerator[bytes, None]:
    try:
        yield b": subscribed\n\n"  # headers and a first byte at once: the client knows it is listening
        while True:
            try:
                # Not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives as
                # the event does (returning the event), and the hang-up's cancellation is then lost.
                async with asyncio.timeout(KEEPALIVE_S):
                    event, dropped = await subscription.next()
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            payload = json.dumps(event.as_dict(dropped), separators=(",", ":"), default=str)
            yield f"id: {event.seq}\ndata: {payload}\n\n".encode()
    finally:
        bus.unsubscribe(subscription)


@router.get("/v1/events")
@requires("read")
async def events(
    request: Request,
    model: str | None = Query(None, description="comma-separated model ids or aliases"),
    types: str | None = Query(None, description="comma-separated event types"),
) -> EventStream:
    svc = services(request)
    wanted_types = _names(types)
    if unknown := sorted(set(wanted_types) - EVENT_TYPES):
        raise APIError(
            400, f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}", param="types"
        )
    wanted_models = [svc.resolver.usable(name) for name in _names(model)]
    tenant = keys.current()
    if not wanted_models and tenant.models is not None:
        wanted_models = sorted(tenant.models) or [""]  # a key with no model sees events of no model
    bus = svc.supervisor.events
    subscription = bus.subscribe(
        models=wanted_models or None, types=wanted_types or None, capacity=SUBSCRIBER_BUFFER, key=tenant.records_of
    )
    mark_feed(request.scope)
    return EventStream(Feed(_stream(bus, subscription)))
