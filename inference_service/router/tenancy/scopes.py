"""Which scope each route needs: declared on the route itself, looked up once per request.

A route's endpoint is declared with :func:`requires` (any one of the given scopes lets a key
in; none: a public route). :class:`RouteScopes` is built from the app's route table when the
app is made, and refuses to build if any route has no declaration - a new route cannot be
open by mistake. Per request, a path without parameters is one dictionary lookup (every
proxied endpoint); only paths with parameters (``/v1/models/{id}``) are matched in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from inference_service.config.keys import SCOPES, Scope

Access = frozenset[str]
#: No key needed (the health checks, the dashboard's static files).
PUBLIC: Access = frozenset()
#: Any valid key, whatever its scopes (what a key may read about itself; the API schema).
ANY_KEY: Access = frozenset(SCOPES)
#: The routes that cost a model's work - those needing exactly ``inference`` - count against a key's limits.
METERED: Access = frozenset({"inference"})
#: FastAPI's own routes, which no module of ours declares.
FRAMEWORK_ROUTES: dict[str, Access] = {"/openapi.json": ANY_KEY, "/docs": ANY_KEY, "/docs/oauth2-redirect": ANY_KEY}


@dataclass(frozen=True, slots=True)
class Rule:
    """What a request needs at the door: the scopes of its route, and whether it counts against its key's
    limits - a :data:`METERED` route called with a method it answers (a 405 does no model's work)."""

    access: Access
    metered: bool


#: A path no route has (a 404): any key may learn so, and it costs nothing.
_NO_ROUTE = Rule(ANY_KEY, metered=False)

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
_declared: dict[Callable[..., Any], Access] = {}


def requires(*scopes: Scope) -> Callable[[Endpoint], Endpoint]:
    """Declare that an endpoint needs a key with one of ``scopes`` (none given: a public route)."""

    def declare(endpoint: Endpoint) -> Endpoint:
        _declared[endpoint] = frozenset(scopes)
        return endpoint

    return declare


class UndeclaredRoute(Exception):
    """A route whose endpoint declares no scope: the app refuses to start with it."""


def _access(route: Route) -> Access:
    if route.endpoint in _declared:
        return _declared[route.endpoint]
    if route.path in FRAMEWORK_ROUTES:
        return FRAMEWORK_ROUTES[route.path]
    raise UndeclaredRoute(
        f"route {route.path} ({', '.join(sorted(route.methods or ()))}) declares no scope (@requires)"
    )


def _plain_routes(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    """Every route, in match order: newer FastAPI mounts an included router as one entry that holds it."""
    for route in routes:
        if isinstance(route, Route):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None and not getattr(included, "prefix", ""):
            yield from _plain_routes(included.routes)
        else:
            raise UndeclaredRoute(f"{route!r} is not a plain route: its scope cannot be declared")


class RouteScopes:
    """The scopes each (method, path) needs, from a route table, in its match order."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._exact: dict[str, list[tuple[frozenset[str], Rule]]] = {}
        self._patterns: list[tuple[re.Pattern[str], frozenset[str], Rule]] = []
        self.declared: list[tuple[str, frozenset[str], Access]] = []  # (path, methods, access): for tests and docs
        for route in _plain_routes(routes):
            methods = frozenset(route.methods or {"GET"})
            access = _access(route)
            self.declared.append((route.path, methods, access))
            rule = Rule(access, metered=access == METERED)
            if route.param_convertors:
                self._patterns.append((route.path_regex, methods, rule))
            else:
                self._exact.setdefault(route.path, []).append((methods, rule))

    def lookup(self, method: str, path: str) -> Rule:
        """What a request needs: its route's rule (the first route of that path's scopes, unmetered, when
        the method does not match - it gets a 405 after authentication); any key for a path no route has."""
        wanted = "GET" if method == "HEAD" else method
        candidates = self._exact.get(path)
        if candidates is None:
            candidates = [(methods, rule) for regex, methods, rule in self._patterns if regex.match(path)]
            if not candidates:
                return _NO_ROUTE
        for methods, rule in candidates:
            if wanted in methods or method in methods:
                return rule
        return Rule(candidates[0][1].access, metered=False)
