"""Reading and validating request bodies into OpenAI-style 4xx errors."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from inference_service.router.errors import APIError

Model = TypeVar("Model", bound=BaseModel)


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


async def parse_body(request: Request, schema: type[Model], max_bytes: int) -> tuple[Model, dict[str, Any]]:
    """The validated request and the client's raw JSON object (forwarded as-is)."""
    raw = await request.body()
    if len(raw) > max_bytes:
        raise APIError(413, f"Request body of {len(raw)} bytes exceeds the limit of {max_bytes}", code="request_too_large")
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise APIError(400, f"Request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "Request body must be a JSON object", code="invalid_json")
    try:
        return schema.model_validate(data), data
    except ValidationError as error:
        raise validation_error(error) from None
