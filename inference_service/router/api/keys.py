"""``GET /v1/key``: what the calling key may do - its name, scopes, models and limits (never a secret,
never another key). The dashboard reads it to offer only what the key may use."""

from __future__ import annotations

from fastapi import APIRouter

from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires

router = APIRouter()


@router.get("/v1/key")
@requires("inference", "read", "admin")
async def this_key() -> dict[str, object]:
    return keys.current().describe()
