"""The proxied OpenAI endpoints: chat completions, completions, embeddings."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from inference_service.router.api.openapi import completion_responses, json_request
from inference_service.router.orchestration import orchestrate
from inference_service.router.proxy.forward import forward
from inference_service.router.proxy.model_support import require
from inference_service.router.proxy.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from inference_service.router.services import services
from inference_service.router.serving.body import parse_body
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy.scopes import requires

router = APIRouter()


@router.post(
    "/v1/chat/completions", openapi_extra=json_request(ChatCompletionRequest), responses=completion_responses()
)
@requires("inference")
async def chat_completions(request: Request) -> Response:
    svc = services(request)
    chat, raw = await parse_body(request, ChatCompletionRequest)
    if "orchestration_mode" in raw or chat.preset or chat.orchestration:
        return await orchestrate(svc, chat, raw, request.receive)
    model_id = svc.resolver.for_task(chat.model, chat.task_type)
    require(svc, model_id, "/v1/chat/completions")
    return await forward(request, svc, model_id, "/v1/chat/completions", raw, chat.stream, chat.priority)


@router.post("/v1/completions", openapi_extra=json_request(CompletionRequest), responses=completion_responses())
@requires("inference")
async def completions(request: Request) -> Response:
    svc = services(request)
    completion, raw = await parse_body(request, CompletionRequest)
    model_id = svc.resolver.resolve(completion.model)
    require(svc, model_id, "/v1/completions")
    return await forward(request, svc, model_id, "/v1/completions", raw, completion.stream, completion.priority)


@router.post("/v1/embeddings", openapi_extra=json_request(EmbeddingRequest), responses=completion_responses())
@requires("inference")
async def embeddings(request: Request) -> Response:
    svc = services(request)
    embedding, raw = await parse_body(request, EmbeddingRequest)
    if embedding.stream:
        raise APIError(400, "embeddings cannot be streamed", param="stream")
    model_id = svc.resolver.resolve(embedding.model)
    require(svc, model_id, "/v1/embeddings")
    return await forward(request, svc, model_id, "/v1/embeddings", raw, False, embedding.priority)


#: The routes the app serves through :class:`~inference_service.router.serving.hot_routes.HotRoutes`.
HOT_ROUTES = {"/v1/chat/completions": chat_completions, "/v1/completions": completions, "/v1/embeddings": embeddings}
