"""Ollama's native API (``/api/*``, ``/``) over every runtime.

``/api/chat``, ``/api/generate`` and ``/api/embed`` are translated to the internal OpenAI
request (:mod:`.requests`) and sent down the one proxy path - :func:`forward`: admission,
fallbacks, metrics (labelled ``api/chat`` ...), the access log - and the answer translated
back (:mod:`.replies`); a stream is relayed by the same stream engine, framed as NDJSON.
Errors are Ollama's ``{"error": "..."}``, 400 where the router's OpenAI endpoints say 422.
Model management (pull, push, create, copy, delete) belongs to the service's config here:
those endpoints answer 403 saying so, rather than 404.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ValidationError

from inference_service.router.api import models
from inference_service.router.api.ollama import catalog
from inference_service.router.api.ollama.replies import NDJSON, OllamaReply, ndjson_protocol
from inference_service.router.api.ollama.requests import (
    Source,
    UpstreamCall,
    chat_call,
    generate_call,
    keep_alive_s,
    sampling_fields,
)
from inference_service.router.api.ollama.schemas import (
    KeepAlive,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbedRequest,
    OllamaGenerateRequest,
    OllamaShowRequest,
)
from inference_service.router.api.openapi import json_request
from inference_service.router.orchestration import orchestrate
from inference_service.router.proxy.dispatch import SERVED_MODEL_HEADER
from inference_service.router.proxy.forward import forward
from inference_service.router.proxy.model_support import require
from inference_service.router.proxy.schemas import ROUTER_ONLY_FIELDS, ChatCompletionRequest
from inference_service.router.proxy.sse import LLAMACPP_NATIVE, OPENAI
from inference_service.router.services import Services, services
from inference_service.router.serving.body import parse_body, validation_error
from inference_service.router.serving.errors import APIError, map_supervisor_errors
from inference_service.router.serving.escaped_json import EscapedJSONResponse
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires

logger = logging.getLogger(__name__)

#: The Ollama API version this server answers as (``GET /api/version``): the docs/api.md it follows.
OLLAMA_API_VERSION = "0.33.0"
#: The model management Ollama does through its API; here the service's config owns the models.
MANAGEMENT = {
    ("POST", "/api/pull"): "models are not pulled through this API: add the model to the service's config "
    "([models.<id>]) and run `inference-service models pull`",
    ("POST", "/api/push"): "pushing models is not supported: this server serves the models of its config",
    ("POST", "/api/create"): "models are defined in the service's config ([models.<id>]), not created through this API",
    ("POST", "/api/copy"): "another name for a model is an alias in the service's config ([models.<id>] aliases)",
    ("DELETE", "/api/delete"): "models are removed from the service's config, not through this API",
    ("HEAD", "/api/blobs/{digest}"): "blobs are not stored: models are GGUF files named in the service's config",
    ("POST", "/api/blobs/{digest}"): "blobs are not stored: models are GGUF files named in the service's config",
}


class OllamaError(BaseModel):
    """Ollama's error shape."""

    error: str


def _error(description: str) -> dict[str, Any]:
    return {"model": OllamaError, "description": description}


_EITHER_ERROR = {
    "anyOf": [{"$ref": "#/components/schemas/OllamaError"}, {"$ref": "#/components/schemas/ErrorEnvelope"}]
}
#: Errors of the endpoints that read a body and a model name.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("invalid JSON or field, an option or field this server cannot honour"),
    404: _error("unknown model (a name, with or without :latest)"),
    413: {
        "description": "body larger than max_body_bytes (refused before the API is known: either shape)",
        "content": {"application/json": {"schema": _EITHER_ERROR}},
    },
}
#: Errors of the endpoints that reach a model.
MODEL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    503: _error("the model's queue is full or timed out (with Retry-After), or it is unavailable"),
    507: _error("insufficient_capacity: no memory or model slot to load the model"),
}
_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one JSON object, or with stream (the default) NDJSON: one object per line",
        "content": {"application/json": {"schema": {"type": "object"}}, "application/x-ndjson": {"schema": {}}},
    }
}

router = APIRouter()

Handler = Callable[[Request], Awaitable[Response]]


def _json(payload: dict[str, Any], upstream: Response | None = None) -> Response:
    """An Ollama object (escaped: it echoes the client's model name), with the served model's header."""
    served = upstream.headers.get(SERVED_MODEL_HEADER) if upstream is not None else None
    return EscapedJSONResponse(payload, headers={SERVED_MODEL_HEADER: served} if served else None)


def _keep_alive(svc: Services, model_id: str, keep_alive: KeepAlive | None, unload_only: bool = False) -> float | None:
    """Apply the request's ``keep_alive`` (or, without one, the model's ``ttl_s`` again); its seconds.

    A model's idle TTL is shared by every key, so changing it - or unloading the model - is an
    admin's decision, as ``POST /v1/models/{id}/unload`` is: from a key without the ``admin``
    scope an unload-only request (``keep_alive: 0``, nothing to generate) is a 403, and any other
    request is served with its ``keep_alive`` ignored (logged; None: the model keeps its TTL).
    Clients send ``keep_alive`` with ordinary requests, so refusing those would break them.
    """
    seconds = keep_alive_s(keep_alive)  # a bad value is a 400 whoever sends it
    if "admin" not in keys.current().scopes:
        if seconds == 0 and unload_only:
            keys.check_scope("admin", "unloading a model (keep_alive: 0)", param="keep_alive")
        if keep_alive is not None:
            logger.info(
                "model %s: keep_alive %s ignored: the key %r lacks the 'admin' scope a model's idle TTL needs",
                model_id,
                keep_alive,
                keys.current().name,
            )
        return None
    with map_supervisor_errors():  # a model removed by a config reload after it was resolved: 404
        svc.supervisor.keep_alive(model_id, seconds)
    return seconds


async def _load_or_unload(svc: Services, model_id: str, reply: OllamaReply, keep_alive: float | None) -> Response:
    """An empty prompt (or no messages) loads the model; with ``keep_alive: 0`` it unloads it - unless it
    is pinned: only an admin's explicit unload stops a pinned model, and this is any client's request."""
    if keep_alive == 0:
        if (config := svc.settings.models.get(model_id)) is not None and config.pinned:
            message = f"model {model_id!r} is pinned: only an admin unload (POST /v1/models/{{id}}/unload) stops it"
            raise APIError(409, message, param="keep_alive", code="model_pinned")
        await svc.supervisor.unload(model_id)
        return _json(reply.settled("unload"))
    await models.load(svc, model_id)
    return _json(reply.settled("load"))


def _upstream_json(response: Response, model_id: str) -> dict[str, Any]:
    try:
        payload = json.loads(bytes(response.body))
    except ValueError:
        raise APIError(502, f"model {model_id!r} returned a non-JSON body", type="upstream_error") from None
    if not isinstance(payload, dict):
        raise APIError(502, f"model {model_id!r} returned JSON that is not an object", type="upstream_error")
    return payload


async def _proxy(
    request: Request,
    svc: Services,
    model_id: str,
    call: UpstreamCall,
    reply: OllamaReply,
    stream: bool,
    priority: int,
    endpoint: str,
) -> Response:
    """Send the translated request down the proxy path; translate its answer back."""
    path = call.source.value
    require(svc, model_id, path)
    upstream = LLAMACPP_NATIVE if call.source is Source.INFILL else OPENAI
    protocol = ndjson_protocol(upstream, reply)
    response = await forward(request, svc, model_id, path, call.body, stream, priority, protocol, endpoint)
    if stream:
        return response  # the NDJSON stream
    return _json(reply.whole(_upstream_json(response, model_id)), response)


async def _orchestrated(request: Request, svc: Services, body: OllamaChatRequest, raw: dict[str, Any]) -> Response:
    """An orchestration through ``/api/chat``, as in an OpenAI body. It answers once the final stage
    is done: a stream is that answer as one NDJSON line, ``done: true``."""
    started = time.perf_counter()
    model_id = catalog.resolve(svc, body.model, body.task_type)
    call = chat_call(body.model_copy(update={"stream": False}))
    openai = {**call.body, **{key: raw[key] for key in ROUTER_ONLY_FIELDS if key in raw}, "model": model_id}
    try:
        chat = ChatCompletionRequest.model_validate(openai)
    except ValidationError as error:
        raise validation_error(error) from None
    response = await orchestrate(svc, chat, openai, request.receive)
    completion = _upstream_json(response, model_id)
    answer = OllamaReply(Source.CHAT, True, body.model, started).whole(completion)
    answer["orchestration"] = completion.get("orchestration")
    if body.stream:
        return Response(json.dumps(answer).encode() + b"\n", media_type=NDJSON.decode())
    return _json(answer)


@router.post("/api/chat", openapi_extra=json_request(OllamaChatRequest), responses={**_STREAMED, **MODEL_ERRORS})
@requires("inference")
async def chat(request: Request) -> Response:
    started = time.perf_counter()
    svc = services(request)
    body, raw = await parse_body(request, OllamaChatRequest)
    if body.orchestration_mode or body.preset or body.orchestration:
        return await _orchestrated(request, svc, body, raw)
    model_id = catalog.resolve(svc, body.model, body.task_type)
    keep_alive = _keep_alive(svc, model_id, body.keep_alive, unload_only=not body.messages)
    reply = OllamaReply(Source.CHAT, True, body.model, started)
    if not body.messages:
        return await _load_or_unload(svc, model_id, reply, keep_alive)
    call = chat_call(body)
    return await _proxy(request, svc, model_id, call, reply, body.stream, body.priority, "api/chat")


@router.post(
    "/api/generate", openapi_extra=json_request(OllamaGenerateRequest), responses={**_STREAMED, **MODEL_ERRORS}
)
@requires("inference")
async def generate(request: Request) -> Response:
    started = time.perf_counter()
    svc = services(request)
    body, _ = await parse_body(request, OllamaGenerateRequest)
    model_id = catalog.resolve(svc, body.model)
    keep_alive = _keep_alive(svc, model_id, body.keep_alive, unload_only=not body.prompt and not body.suffix)
    call = generate_call(body, "chat" in svc.settings.models[model_id].served_capabilities)
    reply = OllamaReply(call.source, False, body.model, started)
    if not body.prompt and not body.suffix:
        return await _load_or_unload(svc, model_id, reply, keep_alive)
    return await _proxy(request, svc, model_id, call, reply, body.stream, body.priority, "api/generate")


async def _embeddings(
    request: Request, schema: type[OllamaEmbedRequest | OllamaEmbeddingsRequest], endpoint: str
) -> tuple[dict[str, Any], Response]:
    """Embed the request's texts through ``/v1/embeddings``: Ollama's answer (the vectors in input
    order) and the upstream response."""
    started = time.perf_counter()
    svc = services(request)
    body, _ = await parse_body(request, schema)
    model_id = catalog.resolve(svc, body.model)
    sampling_fields(body.options)  # refuses what cannot be honoured; sampling has no bearing on embeddings
    _keep_alive(svc, model_id, body.keep_alive)
    require(svc, model_id, "/v1/embeddings")
    openai: dict[str, Any] = {"input": body.input} if isinstance(body, OllamaEmbedRequest) else {"input": body.prompt}
    if isinstance(body, OllamaEmbedRequest) and body.dimensions:
        openai["dimensions"] = body.dimensions
    response = await forward(request, svc, model_id, "/v1/embeddings", openai, False, body.priority, endpoint=endpoint)
    reply = _upstream_json(response, model_id)
    data = sorted(reply.get("data") or [], key=lambda item: item.get("index", 0))
    return {
        "model": body.model,
        "embeddings": [item.get("embedding") for item in data],
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 0,
        "prompt_eval_count": int((reply.get("usage") or {}).get("prompt_tokens") or 0),
    }, response


@router.post("/api/embed", openapi_extra=json_request(OllamaEmbedRequest), responses=MODEL_ERRORS)
@requires("inference")
async def embed(request: Request) -> Response:
    answer, response = await _embeddings(request, OllamaEmbedRequest, "api/embed")
    return _json(answer, response)


@router.post("/api/embeddings", openapi_extra=json_request(OllamaEmbeddingsRequest), responses=MODEL_ERRORS)
@requires("inference")
async def embeddings(request: Request) -> Response:
    """The legacy form: one ``prompt``, one ``embedding``."""
    answer, response = await _embeddings(request, OllamaEmbeddingsRequest, "api/embeddings")
    return _json({"embedding": answer["embeddings"][0]}, response)


@router.get("/api/tags")
@requires("inference", "read")
async def tags(request: Request) -> Response:
    return _json(await catalog.tags(services(request)))


@router.get("/api/ps")
@requires("inference", "read")
async def running(request: Request) -> Response:
    return _json(await catalog.running(services(request)))


@router.post("/api/show", openapi_extra=json_request(OllamaShowRequest), responses=ERRORS)
@requires("inference", "read")
async def show(request: Request) -> Response:
    svc = services(request)
    body, _ = await parse_body(request, OllamaShowRequest)
    name = body.model or body.name
    if name is None:
        raise APIError(400, "'model' is a required property", param="model")
    return _json(await catalog.show(svc, catalog.resolve(svc, name)))


@router.get("/api/version")
@requires("inference", "read", "admin")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION}


# Ollama's root answers probes (clients check it before anything else); HEAD is GET's twin.
@router.head("/", include_in_schema=False)
@router.get("/", response_class=PlainTextResponse)
@requires("inference", "read", "admin")
async def root() -> str:
    return "Ollama is running"


def _refusal(message: str) -> Handler:
    @requires("inference", "read", "admin")
    async def refuse(_: Request) -> Response:
        return EscapedJSONResponse({"error": message}, status_code=403)

    return refuse


for (_method, _path), _message in MANAGEMENT.items():
    router.add_api_route(
        _path,
        _refusal(_message),
        methods=[_method],
        name=f"ollama {_method} {_path}",
        include_in_schema=_method != "HEAD",
        responses={403: _error("model management belongs to the service's config")},
    )


@router.api_route(
    "/api/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
@requires("inference", "read", "admin")
async def unknown(request: Request) -> Response:
    """Any other ``/api`` path (or method), as Ollama answers it: 404 - in its shape."""
    return EscapedJSONResponse(
        {"error": f"{request.method} {request.url.path} is not an endpoint of the Ollama API"}, status_code=404
    )
