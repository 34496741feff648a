"""Errors answered outside a route - the key check (401, 403, 429), the body cap (413), a cancel
(499), the shutdown (503) - reach Anthropic's and Ollama's clients in their own API's envelope, read by their official SDKs.

The router's one remote model answers at once (a recording host), or holds its answers while a
test cancels: nothing here needs a runtime.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import httpx
import ollama
import pytest

from tests.support.configs import wait_until, write_config
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
MAX_BODY_BYTES = 4096
KEYS = {
    "operator": {"key": "k-operator", "scopes": ["admin"]},
    "reader": {"key": "k-reader", "scopes": ["read"]},
    "caller": {"key": "k-caller", "scopes": ["inference"]},
    "anthropic-once": {"key": "k-anthropic-once", "scopes": ["inference"], "requests_per_minute": 1},
    "ollama-once": {"key": "k-ollama-once", "scopes": ["inference"], "requests_per_minute": 1},
}
NO_KEY_MESSAGE = "Missing or invalid API key: send 'Authorization: Bearer <key>'"
HI = [{"role": "user", "content": "hi"}]
#: The remote model's answer: an Anthropic message and an OpenAI completion at once, so either API reads it.
REPLY = {
    "id": "x",
    "type": "message",
    "role": "assistant",
    "model": REMOTE_ID,
    "content": [{"type": "text", "text": "hi"}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 1, "output_tokens": 1, "prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host(reply=json.dumps(REPLY).encode()) as recorder:
        yield recorder


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory, host: RecordingHost) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("envelopes")
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}}
    config = write_config(directory / "config.toml", models, keys=KEYS, max_body_bytes=MAX_BODY_BYTES)
    with running_service(config, directory / "logs") as service:
        yield service


@pytest.fixture
def held(host: RecordingHost) -> Iterator[None]:
    """The remote model holds its answers (a request stays in flight) until the test ends."""
    host.hold.clear()
    yield
    host.hold.set()


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    """Where a test's client waits for its answer while the test cancels it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def in_flight(router: ServiceProcess) -> int | None:
    """The requests in flight; None once the router refuses new requests (it is shutting down)."""
    listed = httpx.get(router.url + "/v1/requests", headers={"Authorization": "Bearer k-operator"}, timeout=30)
    if listed.status_code == 503:
        return None
    listed.raise_for_status()
    return len(listed.json()["data"])


@pytest.fixture
def draining(tmp_path: Path, host: RecordingHost, background: ThreadPoolExecutor) -> Iterator[ServiceProcess]:
    """A router told to stop (SIGTERM), kept draining by a request its model holds: new requests are refused."""
    host.hold.clear()
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}}
    config = write_config(tmp_path / "config.toml", models, keys=KEYS, shutdown_grace_s=120)
    with running_service(config, tmp_path / "logs") as service:
        held = background.submit(
            httpx.post,
            service.url + "/v1/chat/completions",
            json={"model": REMOTE_ID, "messages": HI},
            headers={"Authorization": "Bearer k-caller"},
            timeout=120,
        )
        wait_until(lambda: in_flight(service) == 1, timeout_s=30)
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: in_flight(service) is None, timeout_s=30)
        yield service
        host.hold.set()
        held.result(timeout=60)


def cancelled(router: ServiceProcess, request_id: str) -> bool:
    """Whether a cancel of ``request_id`` found it in flight (202; 404 until it is)."""
    answer = httpx.post(
        f"{router.url}/v1/requests/{request_id}/cancel", headers={"Authorization": "Bearer k-operator"}, timeout=30
    )
    return answer.status_code == 202


def anthropic_client(router: ServiceProcess, key: str) -> anthropic.Anthropic:
    """The official SDK, sending ``key`` as the router takes it (``Authorization: Bearer``)."""
    return anthropic.Anthropic(base_url=router.url, api_key=None, auth_token=key, max_retries=0, timeout=60)


def ollama_client(router: ServiceProcess, key: str | None, request_id: str | None = None) -> ollama.Client:
    """The official library, sending ``key`` as a bearer token and ``request_id`` as ``X-Request-ID``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if request_id:
        headers["X-Request-ID"] = request_id
    return ollama.Client(host=router.url, headers=headers, timeout=60)


def assert_anthropic_error(error: anthropic.APIStatusError, type_: str, message: str) -> None:
    """Anthropic's documented shape: a top-level ``"type": "error"`` around the error's type and message."""
    assert isinstance(error.body, dict) and error.body["type"] == "error", error.body
    assert (error.type, error.api_message) == (type_, message)


def test_the_anthropic_sdk_raises_authentication_error_in_anthropics_envelope_for_an_unknown_key(
    router: ServiceProcess,
) -> None:
    with anthropic_client(router, "k-nobody") as client, pytest.raises(anthropic.AuthenticationError) as raised:
        client.messages.create(model=REMOTE_ID, messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert_anthropic_error(raised.value, "authentication_error", NO_KEY_MESSAGE)


def test_the_anthropic_sdk_raises_permission_denied_in_anthropics_envelope_for_a_key_without_the_scope(
    router: ServiceProcess,
) -> None:
    with anthropic_client(router, "k-reader") as client, pytest.raises(anthropic.PermissionDeniedError) as raised:
        client.messages.count_tokens(model=REMOTE_ID, messages=HI)  # type: ignore[arg-type]
    needed = "the key 'reader' lacks the 'inference' scope that POST /v1/messages/count_tokens needs"
    assert_anthropic_error(raised.value, "permission_error", needed)
    assert raised.value.response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


def test_the_anthropic_sdk_raises_rate_limit_error_in_anthropics_envelope_with_retry_after(
    router: ServiceProcess,
) -> None:
    with anthropic_client(router, "k-anthropic-once") as client:
        client.messages.create(model=REMOTE_ID, messages=HI, max_tokens=4)  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError) as raised:
            client.messages.create(model=REMOTE_ID, messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert raised.value.api_message is not None and "requests per minute" in raised.value.api_message
    assert_anthropic_error(raised.value, "rate_limit_error", raised.value.api_message)
    headers = raised.value.response.headers
    assert int(headers["retry-after"]) > 0 and headers["x-ratelimit-limit-requests"] == "1"


def test_a_body_over_the_cap_on_the_messages_api_is_a_413_in_anthropics_envelope(router: ServiceProcess) -> None:
    body = {"model": REMOTE_ID, "max_tokens": 4, "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}
    answer = httpx.post(router.url + "/v1/messages", json=body, headers={"Authorization": "Bearer k-caller"})
    assert answer.status_code == 413
    assert answer.json()["type"] == "error" and answer.json()["error"]["code"] == "request_too_large"


def test_the_ollama_sdk_response_error_carries_the_message_without_a_key(router: ServiceProcess) -> None:
    with ollama_client(router, None) as client, pytest.raises(ollama.ResponseError) as raised:
        client.chat(model=REMOTE_ID, messages=HI)
    assert (raised.value.status_code, raised.value.error) == (401, NO_KEY_MESSAGE)


def test_the_ollama_sdk_response_error_carries_the_message_for_a_key_without_the_scope(
    router: ServiceProcess,
) -> None:
    with ollama_client(router, "k-reader") as client, pytest.raises(ollama.ResponseError) as raised:
        client.generate(model=REMOTE_ID, prompt="hi")
    needed = "the key 'reader' lacks the 'inference' scope that POST /api/generate needs"
    assert (raised.value.status_code, raised.value.error) == (403, needed)


def test_the_ollama_sdk_response_error_carries_the_message_past_a_keys_rate_limit(router: ServiceProcess) -> None:
    with ollama_client(router, "k-ollama-once") as client:
        client.chat(model=REMOTE_ID, messages=HI)
        with pytest.raises(ollama.ResponseError) as raised:
            client.chat(model=REMOTE_ID, messages=HI)
    assert raised.value.status_code == 429
    assert isinstance(raised.value.error, str) and "requests per minute" in raised.value.error


def test_a_body_over_the_cap_on_the_ollama_api_is_a_413_in_ollamas_envelope(router: ServiceProcess) -> None:
    body = {"model": REMOTE_ID, "prompt": "x" * MAX_BODY_BYTES, "stream": False}
    answer = httpx.post(router.url + "/api/generate", json=body, headers={"Authorization": "Bearer k-caller"})
    assert answer.status_code == 413
    assert answer.json() == {"error": f"Request body of {len(answer.request.content)} bytes exceeds the limit of 4096"}


@pytest.mark.usefixtures("held")
def test_a_cancelled_messages_request_gets_its_499_in_anthropics_envelope(
    router: ServiceProcess, background: ThreadPoolExecutor
) -> None:
    request_id = f"cancel-anthropic-{uuid.uuid4().hex}"
    with anthropic_client(router, "k-caller") as client:
        answer = background.submit(
            client.messages.create,
            model=REMOTE_ID,
            messages=HI,  # type: ignore[arg-type]
            max_tokens=4,
            extra_headers={"X-Request-ID": request_id},
        )
        wait_until(lambda: cancelled(router, request_id), timeout_s=30)
        with pytest.raises(anthropic.APIStatusError) as raised:
            answer.result(timeout=30)
    assert raised.value.status_code == 499
    assert raised.value.api_message is not None
    assert_anthropic_error(raised.value, "request_cancelled", raised.value.api_message)


@pytest.mark.usefixtures("held")
def test_a_cancelled_ollama_request_gets_its_499_in_ollamas_envelope(
    router: ServiceProcess, background: ThreadPoolExecutor
) -> None:
    request_id = f"cancel-ollama-{uuid.uuid4().hex}"
    with ollama_client(router, "k-caller", request_id) as client:
        answer = background.submit(client.chat, model=REMOTE_ID, messages=HI)
        wait_until(lambda: cancelled(router, request_id), timeout_s=30)
        with pytest.raises(ollama.ResponseError) as raised:
            answer.result(timeout=30)
    assert raised.value.status_code == 499
    assert isinstance(raised.value.error, str) and "was cancelled" in raised.value.error


def test_a_messages_request_to_a_router_shutting_down_gets_the_503_in_anthropics_envelope(
    draining: ServiceProcess,
) -> None:
    with anthropic_client(draining, "k-caller") as client, pytest.raises(anthropic.APIStatusError) as raised:
        client.messages.create(model=REMOTE_ID, messages=HI, max_tokens=4)  # type: ignore[arg-type]
    assert raised.value.status_code == 503 and raised.value.response.headers["retry-after"] == "1"
    assert_anthropic_error(raised.value, "shutting_down", "the server is shutting down: retry on another instance")


def test_an_ollama_request_to_a_router_shutting_down_gets_the_503_in_ollamas_envelope(
    draining: ServiceProcess,
) -> None:
    with ollama_client(draining, "k-caller") as client, pytest.raises(ollama.ResponseError) as raised:
        client.chat(model=REMOTE_ID, messages=HI)
    assert (raised.value.status_code, raised.value.error) == (
        503,
        "the server is shutting down: retry on another instance",
    )


def test_a_method_the_messages_api_does_not_take_is_a_405_in_anthropics_envelope(router: ServiceProcess) -> None:
    """Starlette's own HTTP error, answered by the exception handlers rather than the route."""
    answer = httpx.get(router.url + "/v1/messages", headers={"Authorization": "Bearer k-caller"}, timeout=30)
    assert answer.status_code == 405
    assert answer.json() == {
        "type": "error",
        "error": {"message": "Method Not Allowed", "type": "invalid_request_error", "param": None, "code": None},
    }
