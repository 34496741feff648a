"""One exception-handler table: a hot route answers every exception exactly as the app's routes do.

A small app with the router app's exception handlers serves the same raising handler twice:
as an ordinary FastAPI route and as a hot route (HotRoutes calls it without FastAPI).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from inference_service.config import ModelConfig
from inference_service.router.app import create_app
from inference_service.router.serving.disconnect import ClientDisconnected
from inference_service.router.serving.errors import APIError, not_found
from inference_service.router.serving.exception_handlers import handler_for
from inference_service.router.serving.hot_routes import HotRoutes
from inference_service.router.serving.middleware import BodyTooLarge
from tests.unit.supervisor.fakes import FakeRuntime, Harness

HOT = "/hot"
ORDINARY = "/ordinary"


class NamedRefusal(APIError):
    """An APIError subclass: answered by APIError's handler, found along its class hierarchy."""


RAISED: dict[str, Callable[[], Exception]] = {
    "api_error": lambda: not_found("The model 'x' does not exist"),
    "api_error_subclass": lambda: NamedRefusal(409, "busy", code="conflict"),
    "http_exception": lambda: HTTPException(405, "Method Not Allowed", headers={"Allow": "GET"}),
    "request_validation_error": lambda: RequestValidationError([{"loc": ("body", "model"), "msg": "Field required"}]),
    "client_disconnected": ClientDisconnected,
    "starlette_client_disconnect": ClientDisconnect,
    "unexpected": lambda: ZeroDivisionError("a bug"),
}


@pytest.fixture
def router_handlers() -> Iterator[dict[Any, Any]]:
    """The exception handlers of the router's app (built, never started)."""
    harness = Harness(["a"])

    def runtime(config: ModelConfig) -> FakeRuntime:
        return harness.runtimes[config.id]

    router_app = create_app(harness.settings, runtime)
    yield router_app.exception_handlers
    logging.getLogger().removeHandler(router_app.state.log_buffer)  # its lifespan would have


@pytest.fixture(params=RAISED.values(), ids=RAISED.keys())
async def client(request: pytest.FixtureRequest, router_handlers: dict[Any, Any]) -> AsyncIterator[httpx.AsyncClient]:
    raise_it: Callable[[], Exception] = request.param

    async def failing(_: Request) -> Response:
        raise raise_it()

    app = FastAPI(exception_handlers=router_handlers)
    app.add_api_route(ORDINARY, failing, methods=["POST"])
    app.add_middleware(HotRoutes, routes={HOT: failing})
    # raise_app_exceptions=False: the catch-all's 500 is the answer (it re-raises for the server to log).
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://router") as http:
        yield http


def answer(response: httpx.Response) -> tuple[int, dict[str, Any], bytes]:
    return response.status_code, dict(response.headers), response.content


async def test_a_hot_route_answers_an_exception_exactly_as_the_apps_routes_do(client: httpx.AsyncClient) -> None:
    ordinary, hot = await client.post(ORDINARY), await client.post(HOT)
    assert answer(hot) == answer(ordinary)


@pytest.mark.parametrize(
    ("raised", "status"),
    [
        (RAISED["api_error_subclass"](), 409),
        (RAISED["http_exception"](), 405),
        (ClientDisconnected(), 499),
        (ClientDisconnect(), 499),
    ],
)
async def test_an_exception_is_answered_by_the_handler_of_its_nearest_class_in_the_table(
    raised: Exception, status: int
) -> None:
    handler = handler_for(raised)
    assert handler is not None
    response = await handler(Request({"type": "http", "method": "POST", "path": HOT, "headers": []}), raised)
    assert response.status_code == status


@pytest.mark.parametrize("raised", [ZeroDivisionError("a bug"), BodyTooLarge(100, 10)])
def test_an_exception_only_the_catch_all_takes_is_left_to_propagate(raised: Exception) -> None:
    """Past the hot routes: the middleware answers a body over the limit (413), the server's
    outermost middleware anything else."""
    assert handler_for(raised) is None
