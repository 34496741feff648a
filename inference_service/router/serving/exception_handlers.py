"""The router's exception handlers: one table, for the app and for the hot routes alike.

The app installs :data:`EXCEPTION_HANDLERS` as its exception handlers (:func:`install`);
:class:`~inference_service.router.serving.hot_routes.HotRoutes`, which calls its handlers
outside FastAPI, finds the same handler with :func:`handler_for`. An exception is answered
by the handler of the first class in its ``__mro__`` that the table names, as Starlette
looks its handlers up (``starlette/_exception_handler.py``), so one raised anywhere gets
one answer - in the envelope of the API the request called (``APIError.response_for``), so a
route of Anthropic's or Ollama's API needs no handler of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from inference_service.router.serving.disconnect import CLIENT_CLOSED, CLIENT_GONE
from inference_service.router.serving.errors import APIError

logger = logging.getLogger(__name__)

#: ``(request, exception) -> response``; the exception's type is the one its table entry names.
ExceptionHandler = Callable[[Request, Any], Awaitable[Response]]

#: The envelope ``type`` of Starlette's own HTTP errors (a path no route has, a method it does not take).
_HTTP_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
}


async def _api_error(request: Request, error: APIError) -> Response:
    return error.response_for(request.scope["path"])


async def _client_gone(_: Request, __: Exception) -> Response:
    """A client gone before its answer: a 499 for the access line, not an unhandled error (the server drops it)."""
    return Response(status_code=CLIENT_CLOSED)


async def _invalid_request(request: Request, error: RequestValidationError) -> Response:
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first["loc"]) or None
    return APIError(422, f"Invalid request: {first['msg']}", param=param).response_for(request.scope["path"])


async def _http_error(request: Request, error: HTTPException) -> Response:
    message = error.detail if isinstance(error.detail, str) else "request failed"
    type_ = _HTTP_ERROR_TYPES.get(error.status_code, "invalid_request_error")
    answer = APIError(error.status_code, message, type_, headers=dict(error.headers or {}))
    return answer.response_for(request.scope["path"])


async def _unexpected(request: Request, error: Exception) -> Response:
    logger.exception("unhandled error")
    # The server drops the connection after an unhandled exception: say so, or a pooling
    # client would send its next request down a dead socket.
    answer = APIError(
        500, f"internal error: {error.__class__.__name__}", "internal_error", headers={"Connection": "close"}
    )
    return answer.response_for(request.scope["path"])


#: Every exception class the router answers, and how. ``Exception`` - the catch-all - is
#: Starlette's outermost middleware's to call: it answers the 500, then re-raises for the
#: server to log and close the connection.
EXCEPTION_HANDLERS: Mapping[type[Exception], ExceptionHandler] = {
    APIError: _api_error,
    **dict.fromkeys(CLIENT_GONE, _client_gone),
    RequestValidationError: _invalid_request,
    HTTPException: _http_error,
    Exception: _unexpected,
}


def handler_for(error: Exception) -> ExceptionHandler | None:
    """The handler of ``error``'s most specific class in the table; None if only the catch-all takes it.

    None, as Starlette's ExceptionMiddleware finds nothing there either, leaves the error to
    propagate: through the router's middleware (which answers some on its own: a body over
    the limit is a 413) to the catch-all.
    """
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if (handler := EXCEPTION_HANDLERS.get(cls)) is not None:
            return handler
    return None


def install(app: FastAPI) -> None:
    """Make the table ``app``'s exception handlers (FastAPI's defaults for its own errors replaced)."""
    for exception_class, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception_class, handler)
