"""Keys with scopes over real HTTP: every route against every kind of caller, models per key,
and keys given as a literal, from the environment and as a digest.

The inference model is a remote one on a host that answers anything at once, so the whole
route table can be walked cheaply; SmolLM2 is configured but never loaded - a key that may
not use it must be refused before it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.route_scopes import Call, calls
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
SECRETS = {"inference": "k-infer", "read": "k-read", "admin": "k-admin", "batch": "k-batch"}
CALLERS = {"no key": None, "unknown key": "k-nobody", **{f"{name} key": SECRETS[name] for name in SECRETS}}
#: The scopes each caller's key has (keys_config).
CALLER_SCOPES = {
    "inference key": {"inference"},
    "read key": {"read"},
    "admin key": {"admin"},
    "batch key": {"inference", "read"},
}


def keys_config() -> dict[str, dict[str, object]]:
    """One key per scope - a literal, one from the environment, one as its digest - and a
    ``batch`` key limited to the remote models (a glob)."""
    return {
        "inference": {"key": SECRETS["inference"], "scopes": ["inference"]},
        "read": {"key": "env:TEST_READ_KEY", "scopes": ["read"]},
        "admin": {"sha256": hashlib.sha256(SECRETS["admin"].encode()).hexdigest(), "scopes": ["admin"]},
        "batch": {"key": SECRETS["batch"], "scopes": ["inference", "read"], "models": ["remote*"]},
    }


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, host: RecordingHost) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("tenants")
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}, SMOLLM2_ID: smollm2()}
    config = write_config(directory / "config.toml", models, keys=keys_config())
    with running_service(config, directory / "logs", env={"TEST_READ_KEY": SECRETS["read"]}) as service:
        yield service


def send(service: ServiceProcess, call: Call, secret: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    with httpx.Client(base_url=service.url, headers=headers, timeout=60) as client:
        if call.stream:
            with client.stream(call.method, call.path) as response:
                if response.status_code != 200:
                    response.read()  # an error is a whole body; a feed never ends by itself: its head is enough
                return response
        return client.request(call.method, call.path, json=call.body)


def as_admin(service: ServiceProcess, method: str, path: str) -> httpx.Response:
    return httpx.request(
        method, service.url + path, headers={"Authorization": f"Bearer {SECRETS['admin']}"}, timeout=60
    )


def refusal_message(response: httpx.Response, path: str, type_: str, code: str) -> str:
    """A refusal's message, its envelope checked: Ollama's (``/api/*``) is the message alone,
    every other API's names the error's type and code."""
    error = response.json()["error"]
    if path.startswith("/api/"):
        assert isinstance(error, str), error
        return error
    assert (error["type"], error["code"]) == (type_, code), error
    return str(error["message"])


MATRIX = [(call, scopes, caller) for call, scopes in calls(REMOTE_ID) for caller in CALLERS]


@pytest.mark.parametrize(
    ("call", "scopes", "caller"), MATRIX, ids=[f"{c.method} {c.path} as {who}" for c, _, who in MATRIX]
)
def test_every_route_lets_in_exactly_the_keys_with_its_scope(
    service: ServiceProcess, call: Call, scopes: frozenset[str], caller: str
) -> None:
    response = send(service, call, CALLERS[caller])
    challenge = response.headers.get("www-authenticate", "")
    if not scopes or scopes & CALLER_SCOPES.get(caller, set()):
        # Past the gate: whatever the route answers (its own 403 included), not the gate's refusal.
        assert response.status_code != 401 and "insufficient_scope" not in challenge, response.text[:500]
    elif caller in ("no key", "unknown key"):
        assert response.status_code == 401 and challenge == "Bearer", response.text[:500]
        if call.method != "HEAD":
            message = refusal_message(response, call.path, "authentication_error", "invalid_api_key")
            assert message.startswith("Missing or invalid API key"), message
    else:
        assert response.status_code == 403, response.text[:500]
        assert challenge == f'Bearer error="insufficient_scope", scope="{" ".join(sorted(scopes))}"'
        if call.method == "HEAD":
            return  # no body to read the reason from
        message = refusal_message(response, call.path, "permission_error", "permission_denied")
        assert all(repr(needed) in message for needed in scopes), message


def test_a_refusal_names_no_other_key(service: ServiceProcess) -> None:
    response = send(service, Call("POST", "/admin/reload"), SECRETS["read"])
    assert response.status_code == 403
    assert not [name for name in ("inference", "admin", "batch") if f"'{name}'" in response.text.replace("'admin'", "")]


def test_a_model_outside_the_keys_models_is_403_naming_it_and_never_loaded(service: ServiceProcess) -> None:
    body = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    for path in ("/v1/chat/completions", f"/v1/models/{SMOLLM2_ID}"):
        call = Call("POST", path, body) if path.endswith("completions") else Call("GET", path)
        response = send(service, call, SECRETS["batch"])
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "permission_denied" and SMOLLM2_ID in response.text
    assert as_admin(service, "GET", "/health/ready").status_code in (200, 503)
    card = httpx.get(f"{service.url}/v1/models/{SMOLLM2_ID}", headers={"Authorization": f"Bearer {SECRETS['read']}"})
    assert card.json()["status"] == "unloaded"


def test_the_model_list_holds_only_the_keys_models(service: ServiceProcess) -> None:
    listed = send(service, Call("GET", "/v1/models"), SECRETS["batch"]).json()["data"]
    assert [card["id"] for card in listed] == [REMOTE_ID]
    everything = send(service, Call("GET", "/v1/models"), SECRETS["read"]).json()["data"]
    assert {card["id"] for card in everything} == {REMOTE_ID, SMOLLM2_ID}


def test_a_key_reads_what_it_may_do_and_no_secret(service: ServiceProcess) -> None:
    described = send(service, Call("GET", "/v1/key"), SECRETS["batch"]).json()
    assert described["name"] == "batch" and described["scopes"] == ["inference", "read"]
    assert described["models"] == [REMOTE_ID] and SECRETS["batch"] not in str(described)


def test_the_health_checks_detail_needs_the_read_scope(service: ServiceProcess) -> None:
    wait_until(lambda: send(service, Call("GET", "/health/ready"), None).status_code == 200, timeout_s=30)
    assert "models" not in send(service, Call("GET", "/health/ready"), None).json()
    assert REMOTE_ID in send(service, Call("GET", "/health/ready"), SECRETS["read"]).json()["models"]


def test_the_access_log_names_the_key_and_never_its_secret(service: ServiceProcess) -> None:
    send(service, Call("GET", "/v1/key"), SECRETS["inference"])
    wait_until(lambda: "GET /v1/key 200" in service.log(), timeout_s=10)
    log = service.log()
    assert "key=inference" in log
    assert not [secret for secret in SECRETS.values() if secret in log]


@pytest.fixture
def reloadable(tmp_path: Path, host: RecordingHost) -> Iterator[tuple[ServiceProcess, Path]]:
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}}
    config = write_config(tmp_path / "config.toml", models, keys=keys_config())
    with running_service(config, tmp_path / "logs", env={"TEST_READ_KEY": SECRETS["read"]}) as service:
        yield service, config


def test_a_key_removed_by_a_reload_is_refused_from_the_next_request_on(
    reloadable: tuple[ServiceProcess, Path],
) -> None:
    service, config = reloadable
    assert send(service, Call("GET", "/v1/models"), SECRETS["batch"]).status_code == 200
    remaining = {name: table for name, table in keys_config().items() if name != "batch"}
    write_config(config, {REMOTE_ID: {"runtime": "remote", "url": "http://127.0.0.1:9"}}, keys=remaining)
    assert as_admin(service, "POST", "/admin/reload").status_code == 200
    assert send(service, Call("GET", "/v1/models"), SECRETS["batch"]).status_code == 401
