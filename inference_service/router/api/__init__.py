"""The API surface: one module per API family, each an ``APIRouter`` holding routes only.

The request logic lives in ``router.proxy`` (the pipeline every proxied family shares); a module
here translates its API's shape to that pipeline and back. ``include_routes`` is the one place
that decides the order in which the app matches them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from inference_service.router.api import (
    activity,
    admin,
    anthropic,
    completions,
    events,
    keys,
    llamacpp,
    logs,
    models,
    ops,
    requests,
    responses,
    upstream,
    usage,
)
from inference_service.router.api.ollama import routes as ollama
from inference_service.router.api.openapi import COMMON_ERRORS, MODEL_ERRORS

# Matched in order: the proxied endpoints first saves ~18 us per request (see bench/); logs before
# models, since /v1/models/{id}/logs is not a model id.
_FAMILIES: tuple[tuple[Any, dict[int | str, dict[str, Any]]], ...] = (
    (completions, COMMON_ERRORS),
    (responses, COMMON_ERRORS),
    (anthropic, COMMON_ERRORS),
    (llamacpp, COMMON_ERRORS),
    (ollama, {401: COMMON_ERRORS[401]}),  # its own errors are Ollama's; auth is the middleware's
    (ops, COMMON_ERRORS),
    (events, COMMON_ERRORS),
    (logs, COMMON_ERRORS),
    (keys, COMMON_ERRORS),
    (usage, COMMON_ERRORS),
    (activity, COMMON_ERRORS),
    (models, {**COMMON_ERRORS, **MODEL_ERRORS}),
    (upstream, COMMON_ERRORS),
    (admin, COMMON_ERRORS),
    (requests, COMMON_ERRORS),
)

HOT_ROUTES = completions.HOT_ROUTES


def include_routes(app: FastAPI) -> None:
    """Mount every API family's routes on ``app``, in match order."""
    for family, responses_doc in _FAMILIES:
        app.include_router(family.router, responses=responses_doc)
