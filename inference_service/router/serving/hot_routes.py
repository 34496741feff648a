"""The hot proxied endpoints, dispatched without FastAPI's per-request machinery.

FastAPI still declares these routes - for ``/openapi.json``, and for every request this
does not take (another method gets its 405 there). A ``POST`` to one of them is served
here directly, by the very same handler: called with a Starlette ``Request``, its
response sent as is - or, if it raises, the answer of the app's own exception handler
for it (one table: serving/exception_handlers.py).

What that skips per request - matching through the route table, dependency solving, two
exception-handling wrappers and an exit stack around a handler that uses none of them -
was about a fifth of the router's CPU per proxied request (bench/README.md). It sits
inside the router's own middleware (request id, auth, body limit, shutdown, activity),
so every guarantee they give holds here too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from inference_service.router.serving.exception_handlers import handler_for

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """Pure ASGI middleware: ``POST`` to a path in ``routes`` goes straight to its handler."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Handler]) -> None:
        self.app = app
        self._routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as error:
            answer = handler_for(error)  # the app's own exception handlers, as FastAPI would find them
            if answer is None:
                raise
            response = await answer(request, error)
        await response(scope, receive, send)
