"""What a key may see and change beyond its routes' scopes, over real HTTP: other keys' requests
in ``/v1/events``, other models in ``/health/ready``, a shared model's idle TTL through Ollama's
``keep_alive``, and the CLI driven with a key of one scope.

The model is a remote one on a host that answers anything at once (an OpenAI chat completion),
so loads and requests cost nothing; SmolLM2 is configured but never loaded: the model the
``batch`` key may not use.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import run_cli
from tests.support.configs import SMOLLM2_ID, smollm2, write_config
from tests.support.events import listening
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
TTL_S = 600
SECRETS = {"admin": "k-admin", "ops": "k-ops", "reader": "k-read", "batch": "k-batch", "infer": "k-infer"}
KEYS = {
    "admin": {"key": SECRETS["admin"], "scopes": ["admin"]},
    "ops": {"key": SECRETS["ops"], "scopes": ["admin", "inference"]},
    "reader": {"key": SECRETS["reader"], "scopes": ["read"]},
    "batch": {"key": SECRETS["batch"], "scopes": ["inference", "read"], "models": ["remote*"]},
    "infer": {"key": SECRETS["infer"], "scopes": ["inference"]},
}
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": REMOTE_ID,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host(reply=json.dumps(COMPLETION).encode()) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, host: RecordingHost) -> Path:
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url, "ttl_s": TTL_S}, SMOLLM2_ID: smollm2()}
    return write_config(tmp_path_factory.mktemp("boundaries") / "config.toml", models, keys=KEYS)


@pytest.fixture(scope="module")
def service(config: Path) -> Iterator[ServiceProcess]:
    with running_service(config, config.parent / "logs") as service:
        yield service


def as_key(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


def call(service: ServiceProcess, key: str, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(method, service.url + path, json=body, headers=as_key(key), timeout=TIMEOUT_S)


def loaded_card(service: ServiceProcess) -> dict[str, object]:
    """Load the remote model (as the admin) and return its card: the state the tests start from."""
    response = call(service, "admin", "POST", f"/v1/models/{REMOTE_ID}/load")
    assert response.status_code == 200, response.text
    card: dict[str, object] = response.json()
    assert card["status"] == "loaded", card
    return card


def test_a_read_key_sees_no_request_of_another_key_in_the_events(service: ServiceProcess) -> None:
    events = f"{service.url}/v1/events?types=request,model_state"
    with (
        listening(events, as_key("reader")) as reader,
        listening(events, as_key("batch")) as batch,
    ):
        loaded_card(service)
        chat = {"model": REMOTE_ID, "messages": [{"role": "user", "content": "secret plans"}], "max_tokens": 1}
        assert call(service, "batch", "POST", "/v1/chat/completions", chat).status_code == 200
        batch.wait_for(lambda event: event["type"] == "request", TIMEOUT_S)
        # Published after the request's event: once the reader has it, it has had everything before.
        assert call(service, "admin", "POST", f"/v1/models/{REMOTE_ID}/unload").status_code == 200
        reader.wait_for(lambda event: event["type"] == "model_state" and event["state"] == "unloaded", TIMEOUT_S)
        assert reader.matching(lambda event: event["type"] == "request") == []
        assert [event["key"] for event in batch.matching(lambda event: event["type"] == "request")] == ["batch"]


def test_the_health_checks_detail_lists_only_the_keys_models(service: ServiceProcess) -> None:
    loaded_card(service)
    limited = call(service, "batch", "GET", "/health/ready").json()
    assert (limited["loaded_models"], limited["models"]) == ([REMOTE_ID], {REMOTE_ID: "loaded"})
    every = call(service, "reader", "GET", "/health/ready").json()
    assert set(every["models"]) == {REMOTE_ID, SMOLLM2_ID}


def test_an_ollama_unload_by_a_key_without_admin_is_a_403_in_ollamas_shape(service: ServiceProcess) -> None:
    loaded_card(service)
    response = call(service, "infer", "POST", "/api/chat", {"model": REMOTE_ID, "messages": [], "keep_alive": 0})
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert isinstance(error, str) and "'admin'" in error and "'infer'" in error, error
    assert call(service, "reader", "GET", f"/v1/models/{REMOTE_ID}").json()["status"] == "loaded"


def test_an_ollama_unload_by_a_key_with_admin_unloads(service: ServiceProcess) -> None:
    loaded_card(service)
    response = call(service, "ops", "POST", "/api/chat", {"model": REMOTE_ID, "messages": [], "keep_alive": 0})
    assert response.status_code == 200 and response.json()["done_reason"] == "unload", response.text
    assert call(service, "reader", "GET", f"/v1/models/{REMOTE_ID}").json()["status"] == "unloaded"


def test_a_generation_with_keep_alive_from_a_key_without_admin_leaves_the_ttl_alone(service: ServiceProcess) -> None:
    loaded_card(service)
    body = {"model": REMOTE_ID, "messages": [{"role": "user", "content": "hi"}], "stream": False, "keep_alive": -1}
    served = call(service, "infer", "POST", "/api/chat", body)
    assert served.status_code == 200 and served.json()["message"]["content"] == "hi", served.text
    card = call(service, "reader", "GET", f"/v1/models/{REMOTE_ID}").json()
    assert card["status"] == "loaded" and math.isfinite(card["expires_at"]), card
    assert card["expires_at"] <= card["last_used"] + TTL_S + 1, card


def test_cli_models_load_with_an_admin_only_key_loads(service: ServiceProcess) -> None:
    assert call(service, "admin", "POST", f"/v1/models/{REMOTE_ID}/unload").status_code == 200
    result = run_cli("models", "load", REMOTE_ID, "--url", service.url, "--api-key", SECRETS["admin"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == [REMOTE_ID, "loaded"], result.stdout


def test_cli_with_url_and_api_key_needs_no_key_secret_of_the_config(service: ServiceProcess, config: Path) -> None:
    """The config names its keys' secrets as env:VAR, set in the service's environment, not this shell's."""
    config.with_name("client.toml").write_text(
        '[keys.batch]\nkey = "env:BOUNDARIES_UNSET_KEY"\nscopes = ["inference"]\n'
    )
    client_config = str(config.with_name("client.toml"))
    result = run_cli("usage", "--config", client_config, "--url", service.url, "--api-key", SECRETS["admin"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("KEY"), result.stdout
