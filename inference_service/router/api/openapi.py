"""What ``/openapi.json`` says about the proxied endpoints: request bodies and error answers.

The handlers read the raw body themselves (so unknown fields reach the runtime byte for
byte), which leaves FastAPI nothing to document. The request models are registered here
instead, with the error envelope every 4xx/5xx uses, so clients and schema-based fuzzers
see the real contract.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from inference_service.router.api.ollama.schemas import REQUEST_MODELS as OLLAMA_REQUEST_MODELS
from inference_service.router.proxy.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    *OLLAMA_REQUEST_MODELS,
)


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, not_found_error, queue_full, ...")
    param: str | None
    code: str | None


class ErrorEnvelope(BaseModel):
    """The OpenAI error shape of every error the router returns."""

    error: ErrorDetail


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorEnvelope, "description": description}


#: Errors any route may answer.
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("missing or unknown `Authorization: Bearer <key>` (when keys are configured)"),
    403: _error("permission_denied: the key lacks the route's scope, or may not use the model"),
    404: _error("unknown model or route"),
    413: _error("body larger than max_body_bytes"),
    422: _error("a field has the wrong type or value"),
}

#: Errors of the endpoints that reach a model.
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid JSON, nesting deeper than 64, or a request the model cannot serve"),
    503: _error("queue_full / queue_timeout (with Retry-After), model_unavailable, upstream_unavailable"),
    507: _error("insufficient_capacity: no memory or model slot to load the model"),
}


def json_request(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON request body of a raw-body route."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def completion_responses() -> dict[int | str, dict[str, Any]]:
    """A JSON answer, or with ``"stream": true`` an SSE stream; then the model errors."""
    ok: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "the runtime's answer",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/event-stream": {
                    "schema": {"type": "object", "properties": {"data": {"type": "string"}}}
                },  # each event
            },
        }
    }
    return {**ok, **MODEL_ERRORS}


def install(app: FastAPI) -> None:
    """Generate the schema with the request models in ``components.schemas``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in REQUEST_MODELS:
                definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(definition.pop("$defs", {}))
                components[model.__name__] = definition
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented hook for a custom schema
