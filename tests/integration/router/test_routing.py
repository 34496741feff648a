"""Model names the router accepts: gateway prefixes and aliases resolve to the configured model."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import chat_body
from tests.support.configs import SMOLLM2_ID

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", [f"inference:{SMOLLM2_ID}", f"local:{SMOLLM2_ID}", "smol", "local:smol"])
def test_prefixed_and_aliased_names_reach_the_model(client: httpx.Client, name: str) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(model=name, max_tokens=1))
    assert response.status_code == 200, response.text
    assert response.json()["model"] == SMOLLM2_ID


def test_unknown_prefix_is_not_stripped(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(model=f"remote:{SMOLLM2_ID}", max_tokens=1))
    assert response.status_code == 404
