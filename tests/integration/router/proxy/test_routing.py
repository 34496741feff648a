"""Model names the router accepts: gateway prefixes and aliases resolve to the configured model."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import chat_body, child_url
from tests.support.api import child_headers
from tests.support.configs import SMOLLM2_ID
from tests.support.llama import tokens_predicted
from tests.support.service import ServiceProcess
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration


def _tapped_posts(tap: Wiretap) -> int:
    """Requests that went through the tapped route (its health probes aside)."""
    return sum(request.method == "POST" for request in tap.requests())


@pytest.mark.parametrize("name", [f"inference:{SMOLLM2_ID}", f"local:{SMOLLM2_ID}", "smol", "local:smol"])
def test_prefixed_and_aliased_names_reach_the_models_own_llama_server(
    router: ServiceProcess, client: httpx.Client, tap: Wiretap, name: str
) -> None:
    """SmolLM2's child generated the answer (its own token counter moved by exactly the answer's
    tokens), and not through the ``smollm2-tapped`` route to the same child (its tap saw nothing)."""
    child, auth = child_url(router, SMOLLM2_ID), child_headers(router, SMOLLM2_ID)
    predicted_before, tapped_before = tokens_predicted(child, auth), _tapped_posts(tap)
    response = client.post("/v1/chat/completions", json=chat_body(model=name, max_tokens=2))
    assert response.status_code == 200, response.text
    assert tokens_predicted(child, auth) - predicted_before == response.json()["usage"]["completion_tokens"]
    assert _tapped_posts(tap) == tapped_before


def test_unknown_prefix_is_not_stripped(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(model=f"remote:{SMOLLM2_ID}", max_tokens=1))
    assert response.status_code == 404
