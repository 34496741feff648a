"""The proxied OpenAI endpoints: chat completions, completions, embeddings."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from inference_service.router.body import parse_body
from inference_service.router.disconnect import ClientDisconnected, unless_disconnected
from inference_service.router.dispatch import served_model_headers
from inference_service.router.errors import APIError, upstream_error
from inference_service.router.middleware import request_id_var
from inference_service.router.openapi import completion_responses, json_request
from inference_service.router.orchestration import orchestrate
from inference_service.router.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, without_router_fields
from inference_service.router.services import Services, services
from inference_service.router.sse import relay, sse_response

router = APIRouter()
CLIENT_CLOSED_REQUEST = "499"  # the metrics status of a request whose client went away (nginx's code)


async def forward(
    request: Request, svc: Services, model_id: str, path: str, raw: dict[str, Any], stream: bool, priority: int
) -> Response:
    """Proxy one request to one model: bytes through, errors as OpenAI envelopes.

    A non-streaming client that hangs up is noticed at once, queued or running, and
    counted as 499; a streaming one is noticed by the response itself (see sse.py).
    """
    endpoint = path.removeprefix("/v1/")
    started = time.perf_counter()
    body = without_router_fields(raw)
    request_id = request_id_var.get()
    try:
        if stream:
            events = await svc.dispatcher.open_stream(model_id, path, body, priority, request_id)
            response = sse_response(
                svc.metrics.observe_stream(model_id, endpoint, started, relay(events)),
                svc.settings.stream_send_timeout_for(model_id),
                svc.metrics.slow_readers.labels(model_id).inc,
            )
            response.headers.update(served_model_headers())
            return response
        reply = await unless_disconnected(request.receive, svc.dispatcher.post(model_id, path, body, priority, request_id))
        if reply.status != 200:
            try:
                payload: Any = reply.json()
            except ValueError:
                payload = reply.body.decode(errors="replace")
            raise upstream_error(reply.status, payload)
    except APIError as error:
        svc.metrics.requests.labels(model_id, endpoint, str(error.status)).inc()
        raise
    except ClientDisconnected:
        svc.metrics.requests.labels(model_id, endpoint, CLIENT_CLOSED_REQUEST).inc()
        return Response(status_code=499)  # nobody reads it: the server drops it
    svc.metrics.requests.labels(model_id, endpoint, "200").inc()
    svc.metrics.latency.labels(model_id, endpoint).observe(time.perf_counter() - started)
    return Response(reply.body, status_code=200, media_type="application/json", headers=served_model_headers())


@router.post("/v1/chat/completions", openapi_extra=json_request(ChatCompletionRequest), responses=completion_responses())
async def chat_completions(request: Request) -> Response:
    svc = services(request)
    chat, raw = await parse_body(request, ChatCompletionRequest, svc.settings.max_body_bytes)
    if "orchestration_mode" in raw or chat.preset or chat.orchestration:
        return await orchestrate(svc, chat, raw)
    model_id = svc.resolver.for_task(chat.model, chat.task_type)
    return await forward(request, svc, model_id, "/v1/chat/completions", raw, chat.stream, chat.priority)


@router.post("/v1/completions", openapi_extra=json_request(CompletionRequest), responses=completion_responses())
async def completions(request: Request) -> Response:
    svc = services(request)
    completion, raw = await parse_body(request, CompletionRequest, svc.settings.max_body_bytes)
    model_id = svc.resolver.resolve(completion.model)
    return await forward(request, svc, model_id, "/v1/completions", raw, completion.stream, completion.priority)


@router.post("/v1/embeddings", openapi_extra=json_request(EmbeddingRequest), responses=completion_responses())
async def embeddings(request: Request) -> Response:
    svc = services(request)
    embedding, raw = await parse_body(request, EmbeddingRequest, svc.settings.max_body_bytes)
    if embedding.stream:
        raise APIError(400, "embeddings cannot be streamed", param="stream")
    model_id = svc.resolver.resolve(embedding.model)
    model = svc.settings.models[model_id]
    if model.runtime == "llamacpp" and not model.embeddings:  # refused here rather than loading it to be told so
        raise APIError(
            400, f"model {model_id!r} does not serve embeddings: set `embeddings = true` in its [models.{model_id}] table",
            param="model", code="unsupported_by_model",
        )  # fmt: skip
    return await forward(request, svc, model_id, "/v1/embeddings", raw, False, embedding.priority)

