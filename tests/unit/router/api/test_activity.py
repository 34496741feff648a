"""/v1/activity's record ids (``before``, ``limit``, a capture's id): ASCII digits or the client's 400."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

NOT_IDS = ["²", "١٢", "9" * 19, "9" * 5000]  # a superscript and Arabic-Indic digits pass str.isdigit


@pytest.mark.parametrize("param", ["before", "limit"])
@pytest.mark.parametrize("value", NOT_IDS, ids=["superscript", "arabic-indic", "19-digits", "5000-digits"])
def test_a_cursor_that_is_not_ascii_digits_is_a_400_naming_it(ops_client: TestClient, param: str, value: str) -> None:
    response = ops_client.get("/v1/activity", params={param: value})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


@pytest.mark.parametrize("value", NOT_IDS, ids=["superscript", "arabic-indic", "19-digits", "5000-digits"])
def test_a_capture_id_that_is_not_ascii_digits_is_a_400(ops_client: TestClient, value: str) -> None:
    response = ops_client.get(f"/v1/activity/{value}/capture")
    assert response.status_code == 400 and response.json()["error"]["param"] == "id"
