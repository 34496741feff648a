"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS_CONTENT_TYPE

from inference_service.router.services import services
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires
from inference_service.supervisor import ModelState

router = APIRouter()


# HEAD too: some load balancers probe with it. Kept out of the schema: it is GET's twin.
@router.head("/health", include_in_schema=False)
@router.get("/health")
@requires()
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.head("/health/ready", include_in_schema=False)
@router.get("/health/ready")
@requires()
async def ready(request: Request) -> JSONResponse:
    """200 once any model is loaded, else 503. Which models, in which state: for a key with ``read``
    scope (or when no key is configured), the models it may use - a load balancer's probe needs the
    status only. Readiness itself is the service's: any model loaded, whoever's it is."""
    svc = services(request)
    states = {model_id: svc.supervisor.status(model_id).state.value for model_id in svc.supervisor.model_ids}
    loaded = [model_id for model_id, state in states.items() if state == ModelState.LOADED]
    tenant = keys.current()
    detail = (
        {
            "loaded_models": list(filter(tenant.may_use, loaded)),
            "models": {model_id: state for model_id, state in states.items() if tenant.may_use(model_id)},
        }
        if "read" in tenant.scopes
        else {}
    )
    if loaded:
        return JSONResponse({"status": "ready", **detail})
    return JSONResponse({"status": "not_ready", "reason": "no model is loaded", **detail}, status_code=503)


@router.get("/metrics")
@requires("read")
async def metrics(request: Request) -> Response:
    """Prometheus' text format, or OpenMetrics (with the exemplars linking observations to traces)
    for a scraper that accepts it, as Prometheus does."""
    svc = services(request)
    openmetrics = "application/openmetrics-text" in request.headers.get("accept", "")
    body = await svc.metrics.render(svc.supervisor, openmetrics, kv_store=svc.kv_store)
    return Response(body, media_type=OPENMETRICS_CONTENT_TYPE if openmetrics else CONTENT_TYPE_LATEST)
