"""A remote server's endpoints are unknown to the router: requests are forwarded, and the
server's own 404 comes back as a 404 that says where it came from."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.router.conftest import StartRouter

pytestmark = pytest.mark.integration


def test_a_remote_404_names_the_model_and_the_path(start_router: StartRouter) -> None:
    # The remote server is another inference-service, which knows no model called "elsewhere".
    back = start_router(
        {"qwen": {"runtime": "ollama", "ollama_model": "qwen2.5:0.5b"}},
        runtimes={"ollama": {"url": "http://127.0.0.1:9"}},
    )
    front = start_router({"far": {"runtime": "remote", "url": back.url, "upstream_model": "elsewhere"}})
    response = httpx.post(front.url + "/tokenize", json={"model": "far", "content": "hello"}, timeout=30)
    assert response.status_code == 404, response.text
    message = response.json()["error"]["message"]
    assert "'far'" in message and "/tokenize" in message and "elsewhere" in message
