"""Operator actions on the running service: ``POST /admin/reload``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from inference_service.router.config_reload import ConfigReloader, ReloadRejected
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy.scopes import requires

router = APIRouter()


@router.post("/admin/reload")
@requires("admin")
async def reload_config(request: Request) -> dict[str, Any]:
    """Re-read the config file and apply it as a diff; answers once it is applied (removed and
    restarted models drained). 400 with the reason for an invalid file: the running config stays."""
    reloader: ConfigReloader | None = request.app.state.reloader
    if reloader is None:
        raise APIError(
            409, "this service was not started from a config file: nothing to reload", code="reload_unavailable"
        )
    try:
        return await reloader.reload("api")
    except ReloadRejected as error:
        raise APIError(400, f"config rejected, the running config stays: {error}", code="config_invalid") from None
