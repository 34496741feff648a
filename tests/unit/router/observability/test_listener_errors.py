"""An event listener's exception is caught by the bus (a transition must not break) - and counted on /metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from inference_service.config import ModelConfig
from inference_service.events import MODEL_STATE, Event, EventBus
from inference_service.router.app import create_app
from tests.support.prometheus import sample
from tests.unit.supervisor.fakes import FakeRuntime, Harness

pytestmark = pytest.mark.timeout(30)

COUNTER = "inference_event_listener_errors_total"


@pytest.fixture
async def router(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, EventBus]]:
    """The router app over one fake model, running (its lifespan), and the event bus it counts errors of."""
    harness = Harness(["m"], usage_db=tmp_path / "usage.db")

    def runtime(config: ModelConfig) -> FakeRuntime:
        return harness.runtimes[config.id]

    app = create_app(harness.settings, runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            yield client, app.state.services.supervisor.events


async def scraped(client: httpx.AsyncClient) -> float | None:
    response = await client.get("/metrics")
    response.raise_for_status()
    return sample(response.text, COUNTER)


async def test_metrics_count_the_exceptions_of_event_listeners(router: tuple[httpx.AsyncClient, EventBus]) -> None:
    client, events = router
    before = await scraped(client)

    def broken(event: Event) -> None:
        raise RuntimeError(f"listener bug on {event.type}")

    events.listen(broken)
    events.publish(MODEL_STATE, "m", state="loaded")
    events.publish(MODEL_STATE, "m", state="unloading")

    assert before == 0.0
    assert await scraped(client) == 2.0
