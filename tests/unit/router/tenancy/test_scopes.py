"""Every route declares the scope it needs, and the app's table is the one written down in tests/support."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fastapi import APIRouter, FastAPI

from inference_service.config import Settings
from inference_service.router.app import create_app
from inference_service.router.tenancy.scopes import ANY_KEY, PUBLIC, RouteScopes, UndeclaredRoute, requires
from inference_service.runtimes.factory import runtime_factory
from tests.support.route_scopes import ROUTE_SCOPES


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    settings = Settings()
    app = create_app(settings, runtime_factory(settings, None))
    yield app
    logging.getLogger().removeHandler(app.state.log_buffer)  # create_app's log buffer (the lifespan would remove it)


def test_every_route_of_the_app_needs_the_scopes_the_matrix_says(app: FastAPI) -> None:
    assert RouteScopes(app.routes).declared == ROUTE_SCOPES


def test_a_route_without_a_declared_scope_stops_the_app_from_being_built() -> None:
    router = APIRouter()

    @router.get("/new")
    async def new() -> None: ...

    app = FastAPI(redoc_url=None)  # as the router: its docs routes are declared, redoc is off
    app.include_router(router)
    with pytest.raises(UndeclaredRoute, match="/new"):
        RouteScopes(app.routes)


def _scopes(*routes: tuple[str, str, tuple[str, ...]]) -> RouteScopes:
    router = APIRouter()
    for method, path, scopes in routes:

        async def endpoint() -> None: ...

        router.add_api_route(path, requires(*scopes)(endpoint), methods=[method])  # type: ignore[arg-type]
    app = FastAPI(redoc_url=None)  # as the router: its docs routes are declared, redoc is off
    app.include_router(router)
    return RouteScopes(app.routes)


def test_a_path_with_parameters_is_matched_in_route_order() -> None:
    scopes = _scopes(("GET", "/m/{name:path}/logs", ("admin",)), ("GET", "/m/{name:path}", ("read",)))
    assert scopes.lookup("GET", "/m/x/logs").access == {"admin"}
    assert scopes.lookup("GET", "/m/x").access == {"read"}


def test_head_needs_what_get_needs() -> None:
    assert _scopes(("GET", "/x", ("read",))).lookup("HEAD", "/x").access == {"read"}


def test_the_method_picks_among_routes_of_one_path() -> None:
    scopes = _scopes(("GET", "/x", ("read",)), ("POST", "/x", ("admin",)))
    assert (scopes.lookup("GET", "/x").access, scopes.lookup("POST", "/x").access) == ({"read"}, {"admin"})


def test_a_path_no_route_has_needs_some_key() -> None:
    assert _scopes(("GET", "/x", ())).lookup("GET", "/nowhere").access == ANY_KEY


def test_no_scope_declared_is_a_public_route() -> None:
    assert _scopes(("GET", "/x", ())).lookup("GET", "/x").access == PUBLIC


def test_only_a_method_the_metered_route_answers_is_metered() -> None:
    scopes = _scopes(("POST", "/chat", ("inference",)), ("GET", "/list", ("inference", "read")))
    assert scopes.lookup("POST", "/chat").metered
    assert not scopes.lookup("GET", "/chat").metered  # a 405: no model's work
    assert scopes.lookup("GET", "/chat").access == {"inference"}  # still the route's scope
    assert not scopes.lookup("GET", "/list").metered  # not exactly 'inference'
