"""``GET /v1/usage``: the usage ledger - per key, model and hour - for a key, a model, a time range.

A key with the ``admin`` scope reads any key's usage; any other key reads its own (asking for
another key's is a 403, naming no other key). ``since`` and ``until`` are ISO 8601 times
(``2026-12-07T06:00``, UTC unless an offset is given) or Unix seconds; an hour's row is included
when the hour starts in ``[since, until)``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from inference_service.router.services import services
from inference_service.router.serving.errors import APIError
from inference_service.router.tenancy import keys, ledger
from inference_service.router.tenancy.scopes import requires

router = APIRouter()

_TOTALS = ("requests", "prompt_tokens", "completion_tokens", "errors", "upstream_seconds")


#: The Unix seconds a datetime can name (years 1 to 9999): a time outside them is a client's mistake -
#: and, unchecked, an OverflowError (``inf``) or an integer too large for SQLite (``1e30``), answered 500.
EARLIEST_S = math.floor(datetime.min.replace(tzinfo=UTC).timestamp())
LATEST_S = math.floor(datetime.max.replace(tzinfo=UTC).timestamp())


def seconds_param(value: str | None, param: str, default: int) -> int:
    """``value`` as Unix seconds: ISO 8601 (naive means UTC) or a number from :data:`EARLIEST_S` to
    :data:`LATEST_S`; 400 naming ``param`` otherwise."""
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = _iso_seconds(value, param)
    if not (math.isfinite(seconds) and EARLIEST_S <= seconds <= LATEST_S):
        raise APIError(
            400, f"'{param}' must be a time from year 1 to 9999 (Unix seconds or ISO 8601), not {value!r}", param=param
        )
    return math.floor(seconds)


def _iso_seconds(value: str, param: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 moved past the range by its offset
        raise APIError(400, f"'{param}' must be an ISO 8601 time or Unix seconds, not {value!r}", param=param) from None


def _hour_text(hour: int) -> str:
    return datetime.fromtimestamp(hour, UTC).strftime("%Y-%m-%dT%H:00:00Z")


@router.get("/v1/usage")
@requires("inference", "read", "admin")
async def usage(
    request: Request,
    key: str | None = Query(None, description="a key's name (a key without admin scope: its own only)"),
    model: str | None = Query(None, description="a model id"),
    since: str | None = Query(None, description="ISO 8601 or Unix seconds: hours starting at or after it"),
    until: str | None = Query(None, description="ISO 8601 or Unix seconds: hours starting before it"),
) -> dict[str, Any]:
    tenant = keys.current()
    if "admin" not in tenant.scopes:
        if key not in (None, tenant.name):
            raise APIError(
                403,
                "a key without the 'admin' scope reads its own usage only",
                type="permission_error",
                param="key",
                code="permission_denied",
            )
        key = tenant.name
    query = ledger.Query(
        key, model, seconds_param(since, "since", ledger.Query.since), seconds_param(until, "until", ledger.Query.until)
    )
    rows, complete = await services(request).tenancy.ledger.query(query)
    totals = {name: sum(row[name] for row in rows) for name in _TOTALS}
    for row in rows:
        row["hour"] = _hour_text(row["hour"])
    return {"object": "usage", "data": rows, "totals": totals, "complete": complete}
