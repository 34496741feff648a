"""Each llama-server child answers only the router: its API key is the router's alone."""

from __future__ import annotations

import httpx
import psutil
import pytest

from tests.integration.router.conftest import chat_body, child_url
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/completion"),
        ("GET", "/v1/models"),
        ("GET", "/slots"),
        ("GET", "/metrics"),
        ("GET", "/props"),
    ],
)
def test_a_direct_request_to_the_child_without_its_key_gets_401(router: ServiceProcess, method: str, path: str) -> None:
    response = httpx.request(method, child_url(router, SMOLLM2_ID) + path, json=chat_body(), timeout=30)
    assert response.status_code == 401, response.text


def test_a_browser_page_on_the_host_cannot_use_the_child(router: ServiceProcess) -> None:
    origin = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    response = httpx.post(
        child_url(router, SMOLLM2_ID) + "/v1/chat/completions", json=chat_body(), headers=origin, timeout=30
    )
    assert response.status_code == 401


def test_the_childs_health_stays_open_for_probes(router: ServiceProcess) -> None:
    assert httpx.get(child_url(router, SMOLLM2_ID) + "/health", timeout=30).status_code == 200


def test_the_router_holds_the_key_and_serves(client: httpx.Client, router: ServiceProcess) -> None:
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    # The 401s above are about the key alone: with it, the child's metrics can be scraped.
    metrics = httpx.get(
        child_url(router, SMOLLM2_ID) + "/metrics", headers=child_headers(router, SMOLLM2_ID), timeout=30
    )
    assert metrics.status_code == 200 and "llamacpp:" in metrics.text


def test_the_key_is_not_on_the_command_line_where_every_local_user_can_read_it(router: ServiceProcess) -> None:
    key = child_headers(router, SMOLLM2_ID)["Authorization"].removeprefix("Bearer ")
    command_line = psutil.Process(model_card(router, SMOLLM2_ID)["pid"]).cmdline()
    assert len(key) >= 32
    assert key not in " ".join(command_line) and "--api-key" not in command_line
