"""Every route declares the scope it needs, and the app's table is the one written down in tests/support
and in the README's matrix."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI

from inference_service.config import Settings
from inference_service.router.app import create_app
from inference_service.router.tenancy.scopes import ANY_KEY, PUBLIC, RouteScopes, UndeclaredRoute, requires
from inference_service.runtimes.factory import runtime_factory
from tests.support.route_scopes import ROUTE_SCOPES

README = Path(__file__).resolve().parents[4] / "README.md"
#: The first cell of each row of the README's scope matrix, and the scopes it stands for.
MATRIX_ROWS = {
    "`inference`": {"inference"},
    "`read`": {"read"},
    "`admin`": {"admin"},
    "any key": ANY_KEY,
    "no key": PUBLIC,
}
#: A path in backticks, maybe after its method: `/v1/models/{id}`, `POST /admin/reload`.
_MATRIX_PATH = re.compile(r"`(?:[A-Z]+ )?(/[^`\s]*)`")


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    settings = Settings()
    app = create_app(settings, runtime_factory(settings, None))
    yield app
    logging.getLogger().removeHandler(app.state.log_buffer)  # create_app's log buffer (the lifespan would remove it)


def test_every_route_of_the_app_needs_the_scopes_the_matrix_says(app: FastAPI) -> None:
    assert RouteScopes(app.routes).declared == ROUTE_SCOPES


def _without_parameter_names(path: str) -> str:
    """``/v1/models/{name:path}/load`` and ``/v1/models/{id}/load`` alike: ``/v1/models/{}/load``."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _readme_matrix() -> dict[str, set[str]]:
    """The paths each row of the README's Tenants matrix names, by its first cell."""
    tenants = README.read_text().split("\n## Tenants\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in tenants.splitlines():
        cells = line.split(" | ", 2)
        if line.startswith("| ") and cells[0][2:] in MATRIX_ROWS:
            rows[cells[0][2:]] = {_without_parameter_names(path) for path in _MATRIX_PATH.findall(cells[1])}
    return rows


def test_the_readme_matrix_names_every_path_in_the_rows_of_the_scopes_it_needs() -> None:
    """A route listed under a scope it does not need - or missing from one it does - is a wrong door in the docs."""
    expected: dict[str, set[str]] = {row: set() for row in MATRIX_ROWS}
    for path, _, access in ROUTE_SCOPES:
        for row, scopes in MATRIX_ROWS.items():
            one_of_its_scopes = len(scopes) == 1 and scopes <= access and access != ANY_KEY
            if one_of_its_scopes or access == scopes:  # a scope's row; or "any key" and "no key" as they are
                expected[row].add(_without_parameter_names(path))
    assert _readme_matrix() == expected


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
