"""``/upstream`` paths: whatever stays under the model's base URL passes, anything that climbs out is a 400."""

from __future__ import annotations

import pytest

from inference_service.router.api.upstream import contained_path
from inference_service.router.serving.errors import APIError


@pytest.mark.parametrize("path", ["props", "slots", "v1/models", "api/ps", "metrics", "a/b.c/d", "file..txt", ""])
def test_a_path_below_the_base_is_passed_on_unchanged(path: str) -> None:
    assert contained_path(path) == path


@pytest.mark.parametrize(
    "path",
    [
        "../../other-tenant/admin",  # curl --path-as-is
        "../x",
        "a/../../x",
        "./props",
        "%2e%2e/x",  # encoded twice by the client: the route sees it encoded once
        "..%2fsecret.txt",
        "%252e%252e/x",
        "..\\secret.txt",
        "a/%2E%2E/%2E%2E/x",
        "..",
    ],
)
def test_a_path_that_climbs_out_of_the_base_is_a_400(path: str) -> None:
    with pytest.raises(APIError) as refused:
        contained_path(path)
    assert (refused.value.status, refused.value.code) == (400, "path_outside_model")
