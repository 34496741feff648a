"""The inference requests in flight: ``GET /v1/requests`` lists them, ``POST
/v1/requests/{request_id}/cancel`` cuts one off.

A request's id is the one the router gives every request (``X-Request-ID``: the client's own,
or made up), shown in its access line and activity record. Cancelling goes through the
registry every request runs in (serving/inflight.py), the way the shutdown cuts requests off:
a queued request leaves the queue, a running one is closed upstream (llama-server frees the
slot), an orchestration's stages are cancelled, and the client gets a 499 ``request_cancelled``
envelope - or, once its stream began, that error event and ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from inference_service.router.serving.errors import not_found
from inference_service.router.serving.inflight import InFlight
from inference_service.router.tenancy.scopes import requires

router = APIRouter()


def _in_flight(request: Request) -> InFlight:
    in_flight: InFlight = request.app.state.in_flight  # app.state is untyped; create_app sets it
    return in_flight


@router.get("/v1/requests")
@requires("admin")  # every key's requests: ids to cancel with, key names
async def list_requests(request: Request) -> dict[str, Any]:
    """The inference requests queued or running, oldest first."""
    return {"object": "list", "data": [entry.summary() for entry in _in_flight(request).inference()]}


@router.post("/v1/requests/{request_id}/cancel", status_code=202)
@requires("admin")
async def cancel_request(request: Request, request_id: str) -> dict[str, Any]:
    """Cancel an inference request in flight: 202 once it is being cut off (its own client's answer
    follows at once); 404 ``request_not_found`` for an id that is unknown or already finished.
    Idempotent: cancelling a request already cancelled but still answering is a 202 again."""
    cancelled = _in_flight(request).cancel(request_id)
    if not cancelled:
        raise not_found(
            f"no inference request {request_id!r} in flight: unknown, or already finished",
            code="request_not_found",
            param="request_id",
        )
    return {"id": request_id, "object": "request.cancellation", "cancelled": cancelled}
