"""``GET|POST /upstream/{model}/{path}``: one model's runtime as-is, for ops (``/props``, ``/slots``,
``/metrics`` of one llama-server child; ``/api/ps`` of an Ollama server).

The answer comes back unchanged (status, type, body). A GET goes straight to the runtime -
no admission queue, so a monitoring probe never waits behind inference - and never loads a
model: it answers 409 while the model is not loaded. A POST (``/completion``, ``/tokenize``)
is work for the runtime: it is admitted like any request (it waits for one of the model's
slots, counts in ``inference_in_flight`` and ``inference_queue_depth``) and loads the model
on demand. The path stays under the model's base URL: a ``..`` segment, encoded or not,
is refused before anything is sent (the runtime's credentials go with every request).
"""

from __future__ import annotations

import time
from urllib.parse import unquote

import aiohttp
from fastapi import APIRouter, Request, Response

from inference_service.router.services import Services, services
from inference_service.router.serving.errors import APIError, map_supervisor_errors, service_unavailable
from inference_service.router.tenancy.scopes import requires
from inference_service.runtimes.base import Endpoint
from inference_service.supervisor import ModelState

router = APIRouter()

METRICS_ENDPOINT = "upstream"
#: Percent-decoding rounds before a path counts as hostile (each round undoes one layer of encoding).
_MAX_DECODING_ROUNDS = 4


def contained_path(path: str) -> str:
    """``path`` if it stays below the model's base URL; 400 ``path_outside_model`` otherwise.

    The route gets the path decoded once; a client can encode once more (``%252e%252e``) for
    a server behind the runtime that decodes again, and some servers read ``\\`` as ``/``. So
    the path is decoded until it no longer changes and refused if any segment is then ``.``
    or ``..`` - nothing is left for the HTTP client or the runtime to resolve upwards.
    """
    decoded = path
    for _ in range(_MAX_DECODING_ROUNDS):
        once_more = unquote(decoded)
        if once_more == decoded:
            break
        decoded = once_more
    else:
        raise APIError(400, "the upstream path is encoded too many times", param="path", code="path_outside_model")
    if any(segment in (".", "..") for segment in decoded.replace("\\", "/").split("/")):
        raise APIError(
            400,
            "the upstream path must stay under the model's base URL: no '.' or '..' segments",
            param="path",
            code="path_outside_model",
        )
    return path


@router.api_route("/upstream/{name}/{path:path}", methods=["GET", "POST"])
@requires("admin")
async def upstream(name: str, path: str, request: Request) -> Response:
    svc = services(request)
    model_id = svc.resolver.usable(name)
    path = contained_path(path)
    started = time.perf_counter()
    try:
        if request.method == "GET":
            reply = await _probe(svc, model_id, request, path)
        else:
            body = await request.body()
            async with svc.dispatcher.admitted(model_id) as endpoint:
                reply = await _pass_through(svc, model_id, endpoint, request, path, body)
    except BaseException as error:
        svc.metrics.record_request(model_id, METRICS_ENDPOINT, started, error)
        raise
    svc.metrics.record_request(model_id, METRICS_ENDPOINT, started, str(reply.status_code))
    return reply


async def _probe(svc: Services, model_id: str, request: Request, path: str) -> Response:
    """A GET: to a loaded model only, outside admission."""
    if (state := svc.supervisor.status(model_id).state) != ModelState.LOADED:
        raise APIError(
            409,
            f"model {model_id!r} is {state.value}; GET /upstream never loads a model (POST does)",
            code="model_not_loaded",
        )
    with map_supervisor_errors():
        async with svc.supervisor.lease(model_id) as lease:
            return await _pass_through(svc, model_id, await lease.ready(), request, path, None)


async def _pass_through(
    svc: Services, model_id: str, endpoint: Endpoint, request: Request, path: str, body: bytes | None
) -> Response:
    headers = dict(endpoint.headers)
    if content_type := request.headers.get("content-type"):
        headers["Content-Type"] = content_type
    url = f"{endpoint.base_url}/{path}"
    try:
        async with svc.dispatcher.upstream.session.request(
            request.method, url, params=list(request.query_params.multi_items()), data=body, headers=headers
        ) as reply:
            content = await reply.read()
            return Response(content, status_code=reply.status, media_type=reply.headers.get("Content-Type"))
    except (aiohttp.ClientError, OSError) as error:
        raise service_unavailable(f"model {model_id!r} did not answer: {error}", "upstream_unavailable", 1) from None
