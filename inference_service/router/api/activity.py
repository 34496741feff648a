"""``GET /v1/activity``: the activity history, newest first, a page at a time; and
``GET /v1/activity/{id}/capture``: the bodies captured for one record.

A key with the ``admin`` scope reads every key's records, any other key (``read``) its own. A
page holds ``limit`` records (1 to :data:`MAX_LIMIT`); the next one is asked for with
``before`` = the last record's ``id`` (``next_before``), which stays correct while requests
keep arriving. ``since`` is an ISO 8601 time or Unix seconds, ``status`` a code (``404``) or a
class (``4xx``). Captures hold what clients sent and got - prompts, answers - so they need
``admin``.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Query, Request

from inference_service.router.api.usage import seconds_param
from inference_service.router.database import DatabaseUnavailable
from inference_service.router.observability import history
from inference_service.router.observability.history import ActivityHistory
from inference_service.router.services import services
from inference_service.router.serving.errors import APIError, not_found, service_unavailable
from inference_service.router.tenancy import keys
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

MAX_LIMIT = 500
_STATUS = re.compile(r"([1-5])(xx|\d\d)")


def _history(request: Request) -> ActivityHistory:
    activity = services(request).activity
    assert activity is not None, "create_app always gives the activity history"
    return activity


def _statuses(status: str | None) -> tuple[int, int]:
    """``status`` as the range of codes it means: ``404`` -> (404, 404), ``4xx`` -> (400, 499)."""
    if status is None:
        return history.Query.status_from, history.Query.status_to
    match = _STATUS.fullmatch(status)
    if match is None:
        raise APIError(400, f"'status' must be a status code (404) or a class (4xx), not {status!r}", param="status")
    if match[2] == "xx":
        return int(match[1]) * 100, int(match[1]) * 100 + 99
    return int(status), int(status)


#: Digits a record id may have: ids are microseconds since the epoch (16 digits until the year 2286), and
#: any 18-digit number is within SQLite's integers - a longer one would not bind (a 500) or not parse.
_ID_DIGITS = 18


def _cursor(value: str | None, param: str) -> int | None:
    """``value`` as a record id; 400 naming ``param`` for anything but ASCII digits (``isdigit`` alone takes ``²``)."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= _ID_DIGITS):
        raise APIError(400, f"'{param}' must be a record id (a positive integer), not {value!r}", param=param)
    return int(value)


@router.get("/v1/activity")
@requires("read", "admin")
async def activity(
    request: Request,
    model: str | None = Query(None, description="a model id"),
    status: str | None = Query(None, description="a status code (404) or class (4xx)"),
    since: str | None = Query(None, description="ISO 8601 or Unix seconds: requests that ended at or after it"),
    before: str | None = Query(None, description="a record id: the records before it (the next page)"),
    limit: str | None = Query(None, description=f"records per page, 1 to {MAX_LIMIT} (default 50)"),
) -> dict[str, Any]:
    tenant = keys.current()
    status_from, status_to = _statuses(status)
    page_size = _cursor(limit, "limit")
    if page_size is not None and not 1 <= page_size <= MAX_LIMIT:
        raise APIError(400, f"'limit' must be from 1 to {MAX_LIMIT}, not {page_size}", param="limit")
    cursor = _cursor(before, "before")
    query = history.Query(
        key=None if "admin" in tenant.scopes else tenant.name,
        model=model,
        status_from=status_from,
        status_to=status_to,
        since=seconds_param(since, "since", 0) * history.US,
        before=history.Query.before if cursor is None else cursor,
        limit=history.Query.limit if page_size is None else page_size,
    )
    page = await _history(request).query(query)
    last = page.records[-1]["id"] if page.records else None
    return {
        "object": "list",
        "data": page.records,
        "has_more": page.has_more,
        "next_before": last if page.has_more else None,
        "complete": page.complete,
    }


@router.get("/v1/activity/{record_id}/capture")
@requires("admin")
async def capture(request: Request, record_id: str) -> dict[str, Any]:
    number = _cursor(record_id, "id")
    assert number is not None  # a path parameter is never missing
    try:
        captured = await _history(request).capture(number)
    except DatabaseUnavailable:
        raise service_unavailable("the activity history's database cannot be read", "database_unavailable") from None
    if captured is None:
        raise not_found(f"no capture for activity record {record_id}", code="not_found", param="id")
    return {"object": "activity.capture", "id": number, **captured}
