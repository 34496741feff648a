"""Model management: list, inspect, load, unload (logs: api_logs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from inference_service.router.services import Services, services
from inference_service.router.serving.errors import map_supervisor_errors
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires
from inference_service.supervisor import ModelState, ModelStatus

router = APIRouter()


def expires_at(status: ModelStatus) -> float | None:
    """When an idle loaded model will be unloaded for its idle TTL (None: not counting down)."""
    if status.idle_ttl_s is None or status.state != ModelState.LOADED or status.in_flight:
        return None
    return max(status.last_used or 0.0, status.loaded_at or 0.0) + status.idle_ttl_s


def model_card(svc: Services, model_id: str) -> dict[str, Any]:
    """An OpenAI model object plus the router's state fields (top-level, as ops scripts expect)."""
    status = svc.supervisor.status(model_id)
    config = svc.settings.models.get(model_id)  # None while a model removed by a reload drains
    ttl_s = config.ttl_s if config else None
    queue = svc.dispatcher.queues.get(model_id)
    process = status.process
    return {
        "id": status.id,
        "object": "model",
        "created": int(status.loaded_at or status.state_since),
        "owned_by": f"inference-service/{status.runtime}",
        "status": status.state.value,
        "runtime": status.runtime,
        "aliases": status.aliases,
        "roles": status.roles,
        "capabilities": config.served_capabilities if config else [],
        "pid": process.pid if process else None,
        "port": process.port if process else None,
        "rss_mb": status.rss_mb,
        "cpu_percent": process.cpu_percent if process else None,
        "in_flight": status.in_flight,
        "queue_depth": queue.waiting if queue else 0,
        "restarts": status.restarts,
        "footprint_mb": status.footprint_mb,
        "kv_cache_mb": round(svc.kv_store.saved_bytes(model_id) / 2**20, 1) if svc.kv_store else None,
        "last_error": status.reason if status.state.value == "failed" else None,
        "reason": status.reason,
        "state_since": status.state_since,
        "loaded_at": status.loaded_at if status.state == ModelState.LOADED else None,
        "last_used": status.last_used,
        "ttl_s": ttl_s,
        "expires_at": expires_at(status),
        "pinned": config.pinned if config else False,
        "filters": config.filters.model_dump() if config else None,
        **replica_cards(status),
    }


def replica_cards(status: ModelStatus) -> dict[str, Any]:
    """A model with several replicas lists each: its process, GPUs, state, requests (``queue``: leased, not
    yet served) and memory (the card's own ``rss_mb`` and ``footprint_mb`` are their sums)."""
    if len(status.replicas) < 2:
        return {}
    return {
        "replicas": [
            {
                "replica": replica.index,
                "status": replica.state.value,
                "pid": replica.pid,
                "port": replica.port,
                "devices": replica.devices,
                "in_flight": replica.in_flight,
                "queue": replica.waiting,
                "restarts": replica.restarts,
                "rss_mb": replica.rss_mb,
                "cpu_percent": replica.cpu_percent,
                "footprint_mb": replica.footprint_mb,
            }
            for replica in status.replicas
        ]
    }


@router.get("/v1/models")
@requires("inference", "read")
async def list_models(request: Request) -> dict[str, Any]:
    svc = services(request)
    tenant = keys.current()
    cards = []
    for model_id in filter(tenant.may_use, svc.supervisor.model_ids):
        card = model_card(svc, model_id)
        cards.append(card)
        if svc.settings.list_aliases:  # clients that check the list (Open WebUI) then accept aliases too
            cards += [{**card, "id": alias, "alias_of": model_id} for alias in svc.settings.models[model_id].aliases]
    return {"object": "list", "data": cards}


async def load(svc: Services, model_id: str) -> None:
    """Load a model now; the supervisor's refusals as API errors (:func:`map_supervisor_errors`)."""
    with map_supervisor_errors():
        await svc.supervisor.load(model_id)


@router.post("/v1/models/{name:path}/load")
@requires("admin")
async def load_model(name: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    model_id = svc.resolver.usable(name)
    with map_supervisor_errors():  # the card too: a reload may have removed the model meanwhile
        await svc.supervisor.load(model_id)
        return model_card(svc, model_id)


@router.post("/v1/models/{name:path}/unload")
@requires("admin")
async def unload_model(name: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    model_id = svc.resolver.usable(name)
    with map_supervisor_errors():  # a reload may remove the model while it drains: a 404 like any unknown name
        await svc.supervisor.unload(model_id)
        return model_card(svc, model_id)


@router.get("/v1/models/{name:path}")
@requires("inference", "read")
async def get_model(name: str, request: Request) -> dict[str, Any]:
    svc = services(request)
    return model_card(svc, svc.resolver.usable(name))
