"""OpenAI's Responses API (``POST /v1/responses``), proxied to runtimes that serve it."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from inference_service.router.proxy.forward import forward
from inference_service.router.proxy.model_support import require
from inference_service.router.proxy.schemas import ProxiedRequest
from inference_service.router.proxy.sse import OPENAI_RESPONSES
from inference_service.router.services import services
from inference_service.router.serving.body import parse_body
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

PATH = "/v1/responses"


@router.post(PATH)
@requires("inference")
async def responses(request: Request) -> Response:
    svc = services(request)
    body, raw = await parse_body(request, ProxiedRequest)
    model_id = svc.resolver.resolve(body.model)
    require(svc, model_id, PATH)
    return await forward(request, svc, model_id, PATH, raw, body.stream, body.priority, OPENAI_RESPONSES)
