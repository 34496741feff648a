"""The proxied OpenAI endpoints: chat completions, completions, embeddings."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from inference_service.router import activity
from inference_service.router.body import parse_body
from inference_service.router.errors import APIError, upstream_error
from inference_service.router.middleware import request_id_var
from inference_service.router.orchestration import orchestrate
from inference_service.router.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, without_router_fields
from inference_service.router.services import Services, services
from inference_service.router.sse import relay, sse_response

router = APIRouter()


async def forward(svc: Services, model_id: str, path: str, raw: dict[str, Any], stream: bool, priority: int) -> Response:
    """Proxy one request to one model: bytes through, errors as OpenAI envelopes."""
    endpoint = path.removeprefix("/v1/")
    started = time.perf_counter()
    body = without_router_fields(raw)
    request_id = request_id_var.get()
    activity.note(model=model_id, endpoint=endpoint)
    try:
        if stream:
            events = await svc.dispatcher.open_stream(model_id, path, body, priority, request_id)
            return sse_response(svc.metrics.observe_stream(model_id, endpoint, started, relay(events)))
        reply = await svc.dispatcher.post(model_id, path, body, priority, request_id)
        if reply.status != 200:
            try:
                payload: Any = reply.json()
            except ValueError:
                payload = reply.body.decode(errors="replace")
            raise upstream_error(reply.status, payload)
    except APIError as error:
        svc.metrics.requests.labels(model_id, endpoint, str(error.status)).inc()
        raise
    svc.metrics.requests.labels(model_id, endpoint, "200").inc()
    svc.metrics.latency.labels(model_id, endpoint).observe(time.perf_counter() - started)
    return Response(reply.body, status_code=200, media_type="application/json")


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    svc = services(request)
    chat, raw = await parse_body(request, ChatCompletionRequest, svc.settings.max_body_bytes)
    if "orchestration_mode" in raw or chat.preset or chat.orchestration:
        return await orchestrate(svc, chat, raw)
    model_id = svc.resolver.for_task(chat.model, chat.task_type)
    return await forward(svc, model_id, "/v1/chat/completions", raw, chat.stream, chat.priority)


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    svc = services(request)
    completion, raw = await parse_body(request, CompletionRequest, svc.settings.max_body_bytes)
    model_id = svc.resolver.resolve(completion.model)
    return await forward(svc, model_id, "/v1/completions", raw, completion.stream, completion.priority)


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    svc = services(request)
    embedding, raw = await parse_body(request, EmbeddingRequest, svc.settings.max_body_bytes)
    if embedding.stream:
        raise APIError(400, "embeddings cannot be streamed", param="stream")
    model_id = svc.resolver.resolve(embedding.model)
    return await forward(svc, model_id, "/v1/embeddings", raw, False, embedding.priority)

