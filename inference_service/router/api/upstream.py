"""``GET|POST /upstream/{model}/{path}``: one model's runtime as-is, for ops (``/props``, ``/slots``,
``/metrics`` of one llama-server child; ``/api/ps`` of an Ollama server).

The request goes straight to the runtime - no admission queue, so a monitoring probe never
waits behind inference - and its answer comes back unchanged (status, type, body). A GET
never loads a model: it answers 409 while the model is not loaded. A POST loads it on
demand, like any request. Behind ``api_key`` (every path but ``/health`` needs the key).
"""

from __future__ import annotations

import time

import aiohttp
from fastapi import APIRouter, Request, Response

from inference_service.router.services import Services, services
from inference_service.router.serving.errors import APIError, map_supervisor_errors, not_found, service_unavailable
from inference_service.supervisor import ModelState

router = APIRouter()

METRICS_ENDPOINT = "upstream"


@router.api_route("/upstream/{name}/{path:path}", methods=["GET", "POST"])
async def upstream(name: str, path: str, request: Request) -> Response:
    svc = services(request)
    try:
        model_id = svc.resolver.resolve(name)
    except APIError:
        raise not_found(f"The model '{name}' does not exist", param=None) from None
    started = time.perf_counter()
    try:
        reply = await _pass_through(svc, model_id, request, path)
    except BaseException as error:
        svc.metrics.record_request(model_id, METRICS_ENDPOINT, started, error)
        raise
    svc.metrics.record_request(model_id, METRICS_ENDPOINT, started, str(reply.status_code))
    return reply


async def _pass_through(svc: Services, model_id: str, request: Request, path: str) -> Response:
    with map_supervisor_errors():
        if request.method == "GET" and (state := svc.supervisor.status(model_id).state) != ModelState.LOADED:
            raise APIError(
                409,
                f"model {model_id!r} is {state.value}; GET /upstream never loads a model (POST does)",
                code="model_not_loaded",
            )
        body = await request.body() if request.method == "POST" else None
        async with svc.supervisor.lease(model_id) as lease:
            endpoint = await lease.ready()
            headers = dict(endpoint.headers)
            if content_type := request.headers.get("content-type"):
                headers["Content-Type"] = content_type
            url = f"{endpoint.base_url}/{path}"
            try:
                async with svc.dispatcher.upstream.session.request(
                    request.method, url, params=list(request.query_params.multi_items()), data=body, headers=headers
                ) as reply:
                    content = await reply.read()
                    media_type = reply.headers.get("Content-Type")
                    return Response(content, status_code=reply.status, media_type=media_type)
            except (aiohttp.ClientError, OSError) as error:
                raise service_unavailable(
                    f"model {model_id!r} did not answer: {error}", "upstream_unavailable", 1
                ) from None
