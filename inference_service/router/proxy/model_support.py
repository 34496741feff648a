"""Whether a model can serve a request, decided before it is admitted, loaded or called.

A request the model cannot serve gets a 400 that names the model and the reason, rather
than a load (seconds, memory) followed by the runtime's own, often cryptic, refusal.
"""

from __future__ import annotations

from inference_service.config import Capability
from inference_service.router.services import Services
from inference_service.router.serving.errors import APIError
from inference_service.runtimes.factory import served_paths

#: The capability each proxied path needs (the rest, e.g. /tokenize, any model serves).
CAPABILITY_FOR_PATH: dict[str, Capability] = {
    "/v1/chat/completions": "chat",
    "/v1/responses": "chat",
    "/v1/messages": "chat",
    "/v1/messages/count_tokens": "chat",
    "/apply-template": "chat",
    "/v1/completions": "completion",
    "/infill": "completion",
    "/v1/embeddings": "embeddings",
    "/v1/rerank": "rerank",
}


def can_chat(svc: Services, model_id: str) -> bool:
    return "chat" in svc.settings.models[model_id].served_capabilities


def require(svc: Services, model_id: str, path: str) -> None:
    """400 when the model's runtime does not serve ``path`` or the model lacks the capability it needs.
    (The request's values are checked by the dispatcher, for the model that serves the call.)"""
    model = svc.settings.models[model_id]
    paths = served_paths(model.runtime)
    if paths is not None and path not in paths:
        raise APIError(
            400,
            f"model {model_id!r} runs on {model.runtime}, which does not serve {path}; "
            f"use a llamacpp or remote model for this endpoint",
            param="model",
            code="endpoint_not_supported",
        )
    needed = CAPABILITY_FOR_PATH.get(path)
    if needed is not None and needed not in model.served_capabilities:
        hint = (
            f"set `embeddings = true` in its [models.{model_id}] table to serve embeddings"
            if needed == "embeddings" and model.runtime == "llamacpp"
            else "set 'capabilities' in its config if that is wrong"
        )
        raise APIError(
            400,
            f"model {model_id!r} cannot serve {path}: it is a {'/'.join(model.served_capabilities)} model, "
            f"not a {needed} model ({hint})",
            param="model",
            code="capability_not_supported",
        )
