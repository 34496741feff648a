"""llama-server's own endpoints, routed by the body's ``model`` like the OpenAI ones:
``/v1/rerank``, ``/tokenize``, ``/detokenize``, ``/infill``, ``/apply-template``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from inference_service.router.proxy.forward import forward
from inference_service.router.proxy.model_support import require
from inference_service.router.proxy.schemas import ProxiedRequest
from inference_service.router.proxy.sse import LLAMACPP_NATIVE
from inference_service.router.services import services
from inference_service.router.serving.body import parse_body
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

#: path -> whether it streams (only /infill does, in llama-server's native chunk format).
PATHS = {"/v1/rerank": False, "/tokenize": False, "/detokenize": False, "/infill": True, "/apply-template": False}


@requires("inference")
async def _proxy(request: Request) -> Response:
    path = request.url.path
    svc = services(request)
    body, raw = await parse_body(request, ProxiedRequest)
    if body.stream and not PATHS[path]:
        raise APIError(400, f"{path} cannot be streamed", param="stream")
    model_id = svc.resolver.resolve(body.model)
    require(svc, model_id, path)
    return await forward(request, svc, model_id, path, raw, body.stream, body.priority, LLAMACPP_NATIVE)


for _path in PATHS:
    router.add_api_route(_path, _proxy, methods=["POST"], name=_path.strip("/").replace("/", "_"))
