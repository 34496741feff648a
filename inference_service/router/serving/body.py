"""Reading and validating request bodies into OpenAI-style 4xx errors."""

from __future__ import annotations

import json
import math
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from inference_service.router.serving.disconnect import ClientDisconnected
from inference_service.router.serving.errors import APIError

Model = TypeVar("Model", bound=BaseModel)

#: Deepest JSON nesting accepted; real requests (content parts, tool schemas) stay far below.
MAX_NESTING_DEPTH = 64
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_OPENING = frozenset(b"[{")


def too_deeply_nested(raw: bytes) -> bool:
    """Whether a JSON text nests ``[``/``{`` deeper than MAX_NESTING_DEPTH (brackets in strings ignored).

    Checked before ``json.loads``, whose recursive decoder (and pydantic after it) raises
    RecursionError a few thousand levels down. Everything but the final loop runs at C
    speed: a body with fewer brackets than the limit cannot be too deep; otherwise escaped
    backslashes and quotes are dropped, the text between quotes (string contents) skipped,
    and only the brackets left are walked.
    """
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING_DEPTH:
        return False
    unescaped = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in _OPENING else -1
        if depth > MAX_NESTING_DEPTH:
            return True
    return False


def _not_a_number(constant: str) -> float:
    raise ValueError(f"{constant} is not a JSON number")


def _finite_float(literal: str) -> float:
    """A JSON number as a float, refusing one past float's range (1e309 would become inf)."""
    value = float(literal)
    if math.isinf(value):
        raise ValueError(f"the number {literal} is out of range")
    return value


def loads_strict(raw: bytes) -> Any:
    """``json.loads`` without Python's extensions: ``NaN``/``Infinity`` (not JSON) and numbers
    that overflow to infinity are refused - forwarded, they would reach the runtime as invalid JSON."""
    return json.loads(raw, parse_constant=_not_a_number, parse_float=_finite_float)


def validation_error(error: ValidationError) -> APIError:
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "missing":
        message = f"'{param}' is a required property"
    elif first["type"] == "too_short" and first["loc"] and first["loc"][-1] == "messages":
        message = "'messages' must contain at least one message"
    else:
        message = f"Invalid value for '{param}': {message}"
    return APIError(422, message, param=param, code="invalid_value")


async def parse_body(request: Request, schema: type[Model]) -> tuple[Model, dict[str, Any]]:
    """The validated request and the client's raw JSON object (forwarded as-is).

    The body's size is the middleware's to cap (RequestContextMiddleware, ``max_body_bytes``):
    it counts the bytes as they arrive, so ``request.body()`` never holds more than the limit.
    A client that hangs up before its body is complete raises ClientDisconnected (a 499),
    not Starlette's ClientDisconnect: that would be an unhandled error, a 500 and a logged
    traceback holding the partial body.
    """
    try:
        raw = await request.body()
    except ClientDisconnect:
        raise ClientDisconnected from None
    if too_deeply_nested(raw):
        raise APIError(400, f"Request body is nested deeper than {MAX_NESTING_DEPTH} levels", code="nesting_too_deep")
    try:
        data = loads_strict(raw)
    except RecursionError:  # unreachable after the depth check; kept so no body can ever cause a 500
        raise APIError(
            400, f"Request body is nested deeper than {MAX_NESTING_DEPTH} levels", code="nesting_too_deep"
        ) from None
    except ValueError as error:
        raise APIError(400, f"Request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(data), data
    except ValidationError as error:
        raise validation_error(error) from None
