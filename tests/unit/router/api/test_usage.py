"""``since`` and ``until`` (of /v1/usage and /v1/activity): a time a datetime cannot name is the client's 400."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from inference_service.router.api.usage import seconds_param

OUT_OF_RANGE = ["inf", "-inf", "1e30", "-1e30", "99999999999999999999", "0001-01-01T00:00+01:00"]


@pytest.mark.parametrize("path", ["/v1/usage", "/v1/activity"])
@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_a_time_out_of_range_is_a_400_naming_it(ops_client: TestClient, path: str, value: str) -> None:
    response = ops_client.get(path, params={"since": value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "since") and repr(value) in error["message"]


def test_until_is_held_to_the_range_too(ops_client: TestClient) -> None:
    assert ops_client.get("/v1/usage", params={"until": "1e30"}).json()["error"]["param"] == "until"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("-62135596800", -62135596800), ("0001-01-01T00:00", -62135596800), ("9999-12-31T23:59:59", 253402300799)],
)
def test_years_1_to_9999_are_times(value: str, seconds: int) -> None:
    assert seconds_param(value, "since", 0) == seconds
