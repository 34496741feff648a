"""Whether a model can serve a request, decided before it is admitted, loaded or called.

A request the model cannot serve gets a 400 that names the model and the reason, rather
than a load (seconds, memory) followed by the runtime's own, often cryptic, refusal.
"""

from __future__ import annotations

from inference_service.router.errors import APIError
from inference_service.router.services import Services
from inference_service.runtimes.factory import served_paths


def require_path(svc: Services, model_id: str, path: str) -> None:
    """400 when the model's runtime does not serve ``path`` at all."""
    runtime = svc.settings.models[model_id].runtime
    paths = served_paths(runtime)
    if paths is not None and path not in paths:
        raise APIError(
            400,
            f"model {model_id!r} runs on {runtime}, which does not serve {path}; "
            f"use a llamacpp or remote model for this endpoint",
            param="model",
            code="endpoint_not_supported",
        )
