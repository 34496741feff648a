"""``GET /v1/events``: state changes and request activity, filtered, authenticated, never blocking the router."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.integration.console.conftest import AUTH, OFFLINE_ID, chat_body
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, wait_until
from tests.support.events import listening
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess
from tests.support.timing import interleaved

pytestmark = pytest.mark.integration


def test_events_need_the_api_key(console_router: ServiceProcess) -> None:
    response = httpx.get(console_router.url + "/v1/events", timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_unknown_event_type_is_400_naming_the_known_ones(api: httpx.Client) -> None:
    response = api.get("/v1/events", params={"types": "model_state,bogus"})
    assert response.status_code == 400
    assert "bogus" in response.json()["error"]["message"] and "request" in response.json()["error"]["message"]


def test_unknown_model_filter_is_404(api: httpx.Client) -> None:
    assert api.get("/v1/events", params={"model": "no-such-model"}).status_code == 404


def test_streamed_request_is_published_with_id_ttft_and_tokens(
    console_router: ServiceProcess, api: httpx.Client
) -> None:
    request_id = f"events-{uuid.uuid4().hex[:8]}"
    with listening(f"{console_router.url}/v1/events?types=request&model=smol", AUTH) as stream:
        assert stream.status == 200
        body = chat_body(stream=True, stream_options={"include_usage": True})
        response = api.post("/v1/chat/completions", json=body, headers={"X-Request-ID": request_id})
        assert response.status_code == 200
        event = stream.wait_for(lambda e: e.get("request_id") == request_id, timeout_s=10)
    assert event["type"] == "request" and event["model"] == SMOLLM2_ID
    assert event["endpoint"] == "chat/completions" and event["status"] == 200
    assert 0 < event["ttft_ms"] <= event["duration_ms"]
    assert event["completion_tokens"] == 8 and event["prompt_tokens"] > 0
    assert event["mode"] is None


def test_orchestrated_request_event_carries_mode_and_stages(console_router: ServiceProcess, api: httpx.Client) -> None:
    request_id = f"orch-{uuid.uuid4().hex[:8]}"
    with listening(f"{console_router.url}/v1/events?types=request", AUTH) as stream:
        body = chat_body(max_tokens=4, orchestration_mode="critique", orchestration={"models": [SMOLLM2_ID, GEMMA_ID]})
        response = api.post("/v1/chat/completions", json=body, headers={"X-Request-ID": request_id})
        assert response.status_code == 200, response.text
        event = stream.wait_for(lambda e: e.get("request_id") == request_id, timeout_s=10)
    assert event["mode"] == "critique"
    assert [stage["role"] for stage in event["orchestration"]["stages"]] == [
        s["role"] for s in response.json()["orchestration"]["stages"]
    ]
    assert event["completion_tokens"] == response.json()["usage"]["completion_tokens"]


def test_failed_request_is_published_with_its_status(console_router: ServiceProcess, api: httpx.Client) -> None:
    with listening(f"{console_router.url}/v1/events?types=request&model={OFFLINE_ID}", AUTH) as stream:
        response = api.post("/v1/chat/completions", json=chat_body(model=OFFLINE_ID))
        assert response.status_code == 503
        event = stream.wait_for(lambda e: e["status"] == 503, timeout_s=10)
    assert event["model"] == OFFLINE_ID and event["request_id"] == response.headers["x-request-id"]


def test_model_filter_and_type_filter_exclude_other_events(console_router: ServiceProcess, api: httpx.Client) -> None:
    assert api.post(f"/v1/models/{GEMMA_ID}/unload").status_code == 200  # the orchestration test may have loaded it
    with listening(f"{console_router.url}/v1/events?types=model_state&model={GEMMA_ID}", AUTH) as stream:
        assert (
            api.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200
        )  # a request event elsewhere
        assert api.post(f"/v1/models/{GEMMA_ID}/load").status_code == 200
        stream.wait_for(lambda e: e["state"] == "loaded", timeout_s=30)
        assert api.post(f"/v1/models/{GEMMA_ID}/unload").status_code == 200
        stream.wait_for(lambda e: e["state"] == "unloaded", timeout_s=30)
    assert [e["state"] for e in stream.events] == ["loading", "loaded", "unloading", "unloaded"]
    assert {(e["type"], e["model"]) for e in stream.events} == {("model_state", GEMMA_ID)}
    assert [e["seq"] for e in stream.events] == sorted(e["seq"] for e in stream.events)


def test_killed_child_is_published_as_loading_with_the_crash_then_loaded(
    console_router: ServiceProcess, api: httpx.Client
) -> None:
    pid = api.get(f"/v1/models/{SMOLLM2_ID}").json()["pid"]
    with listening(f"{console_router.url}/v1/events?types=model_state&model={SMOLLM2_ID}", AUTH) as stream:
        os.kill(pid, signal.SIGKILL)  # our own grandchild, by pid
        # Order, not speed, is checked here (a restart is a full, CPU-bound start): generous waits.
        restarting = stream.wait_for(lambda e: e["state"] == "loading", timeout_s=30)
        stream.wait_for(lambda e: e["state"] == "loaded", timeout_s=120)
    assert restarting["reason"], "a crash restart carries the crash as its reason"


def event_subscribers(api: httpx.Client) -> float:
    return sample(api.get("/metrics").text, "inference_event_subscribers") or 0.0


#: 300 request events, ~150 KB: far beyond what a stalled subscriber's socket takes in.
QUICK_REQUESTS = 300
#: What a stalled subscriber may add to each request: far less than any wait on its socket
#: would, and far more than a busy machine's noise over the medians of five runs.
ADDED_PER_REQUEST_S = 0.01


def quick_requests_s(api: httpx.Client) -> float:
    """Seconds the router takes to refuse ``QUICK_REQUESTS`` requests for an offline model."""
    started = time.monotonic()
    for _ in range(QUICK_REQUESTS):
        assert api.post("/v1/chat/completions", json=chat_body(model=OFFLINE_ID)).status_code == 503
    return time.monotonic() - started


@contextmanager
def stalled_subscriber(console_router: ServiceProcess) -> Iterator[None]:
    """A client that opens the event stream and never reads, until the block exits."""
    host, port = console_router.url.removeprefix("http://").split(":")
    with socket.socket() as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        stalled.connect((host, int(port)))
        stalled.sendall(
            f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n".encode()
        )
        yield


def test_a_stalled_subscriber_does_not_slow_requests(console_router: ServiceProcess, api: httpx.Client) -> None:
    """The router keeps answering at full speed: compared in turns with the same requests and
    no subscriber, as a busy machine slows both alike."""
    subscribed_before = event_subscribers(api)

    def with_a_stalled_subscriber() -> float:
        with stalled_subscriber(console_router):
            seconds = quick_requests_s(api)
        wait_until(lambda: event_subscribers(api) == subscribed_before, timeout_s=10)  # its hang-up is noticed too
        return seconds

    comparison = interleaved(lambda: quick_requests_s(api), with_a_stalled_subscriber, rounds=5)
    assert comparison.added_s < QUICK_REQUESTS * ADDED_PER_REQUEST_S, (
        f"{QUICK_REQUESTS} quick requests with a stalled event subscriber: {comparison}"
    )


def test_a_stalled_subscriber_that_hangs_up_is_released(console_router: ServiceProcess, api: httpx.Client) -> None:
    """It hangs up with its socket buffers full, its stream waiting for them to drain and
    events queued behind: its subscription goes all the same (the hang-up's cancellation
    was once lost there, and the stream lived on, writing into a connection that was gone)."""
    before = event_subscribers(api)
    with stalled_subscriber(console_router):
        wait_until(lambda: event_subscribers(api) == before + 1, timeout_s=10)
        for _ in range(3):  # ~450 KB of events: far past the socket buffers and the server's own
            quick_requests_s(api)
    wait_until(lambda: event_subscribers(api) == before, timeout_s=10)


def test_a_closed_stream_releases_its_subscription(console_router: ServiceProcess, api: httpx.Client) -> None:
    before = event_subscribers(api)
    host, port = console_router.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(
            f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n\r\n".encode()
        )
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
        assert event_subscribers(api) == before + 1
    wait_until(lambda: event_subscribers(api) == before, timeout_s=5)  # the client hung up: the subscription is gone
