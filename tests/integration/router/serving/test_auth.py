"""With ``api_key`` set, every endpoint but the health checks needs ``Authorization: Bearer <key>``."""

from __future__ import annotations

import httpx
import ollama
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

KEY = "test-secret-key"


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """No model is preloaded: authentication is decided before any model is touched."""
    return start_router({SMOLLM2_ID: smollm2()}, api_key=KEY)


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-key", KEY, f"Basic {KEY}"], ids=["none", "wrong", "no-scheme", "basic"]
)
def test_request_without_the_right_bearer_key_is_401(router: ServiceProcess, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.get(router.url + "/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_request_with_the_bearer_key_is_200(router: ServiceProcess) -> None:
    response = httpx.get(router.url + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 200
    assert SMOLLM2_ID in {model["id"] for model in response.json()["data"]}


@pytest.mark.parametrize(("path", "status"), [("/health", 200), ("/health/ready", 503)])  # 503: nothing is loaded
def test_health_endpoints_need_no_key(router: ServiceProcess, path: str, status: int) -> None:
    assert httpx.get(router.url + path).status_code == status


@pytest.mark.parametrize(("path", "status"), [("/health", 200), ("/health/ready", 503)])
def test_health_endpoints_answer_head_as_get_without_a_body(router: ServiceProcess, path: str, status: int) -> None:
    """Load balancers that probe with HEAD get the GET's status (not a 405), and no key is needed."""
    response = httpx.head(router.url + path)
    assert response.status_code == status and response.content == b""


def test_metrics_need_the_key(router: ServiceProcess) -> None:
    assert httpx.get(router.url + "/metrics").status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_bearer_scheme_is_case_insensitive(router: ServiceProcess, scheme: str) -> None:
    response = httpx.get(router.url + "/v1/models", headers={"Authorization": f"{scheme} {KEY}"})
    assert response.status_code == 200, response.text


def test_the_key_itself_is_case_sensitive(router: ServiceProcess) -> None:
    response = httpx.get(router.url + "/v1/models", headers={"Authorization": f"Bearer {KEY.upper()}"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/health-admin", "/health/ready/x", "/healthy"])
def test_paths_that_only_start_like_a_health_check_need_the_key(router: ServiceProcess, path: str) -> None:
    response = httpx.get(router.url + path)
    assert response.status_code == 401, f"{path}: {response.status_code} {response.text}"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        f"/v1/models/{SMOLLM2_ID}/load",
        f"/v1/models/{SMOLLM2_ID}/unload",
    ],
)
def test_post_endpoints_without_the_key_are_401_and_touch_no_model(router: ServiceProcess, path: str) -> None:
    body = {
        "model": SMOLLM2_ID,
        "messages": [{"role": "user", "content": "hi"}],
        "prompt": "hi",
        "input": "hi",
        "max_tokens": 1,
    }
    response = httpx.post(router.url + path, json=body, timeout=30)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    card = httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert card["status"] == "unloaded"


def test_post_with_the_bearer_key_is_served(router: ServiceProcess) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    body = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    response = httpx.post(router.url + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    assert httpx.post(f"{router.url}/v1/models/{SMOLLM2_ID}/unload", headers=headers, timeout=60).status_code == 200


def test_ollamas_api_needs_the_key_and_the_ollama_library_sends_it(router: ServiceProcess) -> None:
    assert httpx.get(router.url + "/api/tags").status_code == 401
    with ollama.Client(host=router.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        assert f"{SMOLLM2_ID}:latest" in {model.model for model in client.list().models}
