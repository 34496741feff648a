"""Anthropic's Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), proxied as-is.

Streams are Anthropic's ``event:``/``data:`` pairs, relayed intact and ended by
``message_stop`` (never an OpenAI ``[DONE]``). Errors keep the router's envelope and add
Anthropic's top-level ``"type": "error"``, so both SDKs read them: the exception handlers
answer every error on these paths so (``APIError.response_for``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from inference_service.router.proxy.forward import forward
from inference_service.router.proxy.model_support import require
from inference_service.router.proxy.schemas import ProxiedRequest
from inference_service.router.proxy.sse import ANTHROPIC
from inference_service.router.services import services
from inference_service.router.serving.body import parse_body
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"


async def _proxy(request: Request, path: str, streamable: bool) -> Response:
    svc = services(request)
    body, raw = await parse_body(request, ProxiedRequest)
    if body.stream and not streamable:
        raise APIError(400, f"{path} cannot be streamed", param="stream")
    model_id = svc.resolver.resolve(body.model)
    require(svc, model_id, path)
    return await forward(request, svc, model_id, path, raw, body.stream, body.priority, ANTHROPIC)


@router.post(MESSAGES)
@requires("inference")
async def messages(request: Request) -> Response:
    return await _proxy(request, MESSAGES, streamable=True)


@router.post(COUNT_TOKENS)
@requires("inference")
async def count_tokens(request: Request) -> Response:
    return await _proxy(request, COUNT_TOKENS, streamable=False)
