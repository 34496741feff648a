"""Cancelling a request by its id (``POST /v1/requests/{id}/cancel``) against a real llama-server:
a running request is let go upstream and its slot freed, a queued one leaves the queue and never
goes upstream, and its client gets the documented answer - a 499 ``request_cancelled`` envelope,
or that error event and ``data: [DONE]`` once its stream began."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.router.conftest import TAPPED_ID, chat_body
from tests.integration.router.serving.test_abandoned_requests import (
    LLAMA_SERVER_CHECK_S,
    ROUTER_RELEASE_S,
    busy_slots,
    generating_slots,
    queue_depth,
)
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.service import ServiceProcess
from tests.support.sse import longest_gap
from tests.support.timing import Budget, measured
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

#: Far longer than a cancel takes, however fast the machine generates.
LONG_ANSWER = {"max_tokens": 1000, "ignore_eos": True}
#: Tokens a stream is timed over before it is cancelled (see :func:`longest_gap`).
TIMED_TOKENS = 8
#: How often a test looks at llama-server's slots (each look is a task on its main loop, between tokens).
SLOTS_POLL_S = 0.1


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    """Where a test's client waits for its answer while the test cancels it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def cancel(router: ServiceProcess, request_id: str) -> httpx.Response:
    return httpx.post(f"{router.url}/v1/requests/{request_id}/cancel", timeout=30)


def in_flight(router: ServiceProcess) -> list[str]:
    return [entry["id"] for entry in httpx.get(router.url + "/v1/requests", timeout=30).json()["data"]]


def post(router: ServiceProcess, body: dict[str, object], request_id: str) -> httpx.Response:
    return httpx.post(router.url + "/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}, timeout=120)


def assert_cancelled_envelope(response: httpx.Response) -> None:
    assert response.status_code == 499, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("request_cancelled", "request_cancelled"), error


def test_a_request_in_flight_is_listed_with_its_id_model_and_endpoint(router: ServiceProcess) -> None:
    request_id = f"listed-{uuid.uuid4().hex}"
    body = chat_body(stream=True, **LONG_ANSWER)
    headers = {"X-Request-ID": request_id}
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, headers=headers, timeout=120) as answer:
        lines = answer.iter_lines()  # kept referenced: a discarded iterator closes the stream
        assert next(lines).startswith("data: {")  # generating

        listed = {entry["id"]: entry for entry in httpx.get(router.url + "/v1/requests", timeout=30).json()["data"]}

    assert listed[request_id] == {
        "id": request_id,
        "key": None,  # no keys configured
        "model": SMOLLM2_ID,
        "endpoint": "chat/completions",
        "mode": None,
        "started_at": pytest.approx(time.time(), abs=120),
        "streaming": True,
    }


def test_a_cancelled_running_stream_ends_with_an_error_event_and_done_and_its_slot_is_freed(
    router: ServiceProcess,
) -> None:
    request_id = f"cancel-stream-{uuid.uuid4().hex}"
    wait_until(lambda: busy_slots(router) == 0, timeout_s=60)
    body = chat_body(stream=True, **LONG_ANSWER)
    headers = {"X-Request-ID": request_id}
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=body, headers=headers, timeout=120) as answer:
        lines = answer.iter_lines()
        assert next(lines).startswith("data: {")  # generating
        # llama-server's share, timed under the load of the moment: it notices at its next token.
        release = measured(ROUTER_RELEASE_S, longest_gap(lines, TIMED_TOKENS) + SLOTS_POLL_S)

        assert cancel(router, request_id).status_code == 202
        cancelled = time.monotonic()

        wait_until(lambda: busy_slots(router) == 0, timeout_s=60, interval_s=SLOTS_POLL_S)
        freed_s = time.monotonic() - cancelled
        rest = [line for line in lines if line]
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2].removeprefix("data: "))["error"]["code"] == "request_cancelled"
    assert freed_s < release.seconds, f"the slot was freed {freed_s:.2f}s after the cancel ({release})"
    assert request_id not in in_flight(router)


def test_a_cancelled_running_request_gets_a_499_request_cancelled_and_is_let_go_upstream(
    router: ServiceProcess, tap: Wiretap, background: ThreadPoolExecutor
) -> None:
    """Seen on the wire by the tap before llama-server: the router closes the upstream connection
    within its budget; llama-server frees a non-streamed request's slot at its own connection
    check, about once a second (each /slots answer puts it off: polled more slowly)."""
    marker = f"cancel-running-{uuid.uuid4().hex}"
    wait_until(lambda: busy_slots(router) == 0, timeout_s=60)
    body = chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], **LONG_ANSWER)
    answer = background.submit(post, router, body, marker)
    wait_until(lambda: generating_slots(router) == 1, timeout_s=60, interval_s=0.02)
    release = Budget(fixed_s=0, cpu_s=ROUTER_RELEASE_S)

    assert cancel(router, marker).status_code == 202
    cancelled = time.monotonic()

    assert_cancelled_envelope(answer.result(timeout=60))
    ended = wait_until(lambda: tap.ended_at(marker.encode()), timeout_s=60)
    assert ended - cancelled < release.seconds, f"upstream let go {ended - cancelled:.2f}s after the cancel ({release})"
    wait_until(lambda: busy_slots(router) == 0, timeout_s=120, interval_s=LLAMA_SERVER_CHECK_S)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_cancelled_queued_request_leaves_the_queue_and_never_goes_upstream(
    router: ServiceProcess, tap: Wiretap, background: ThreadPoolExecutor, stream: bool
) -> None:
    """The tapped route admits one request at a time: a stream holds it while the cancelled one
    queues. A queued stream has sent nothing yet, so it too gets the envelope."""
    marker = f"cancel-queued-{uuid.uuid4().hex}"
    holder = chat_body(model=TAPPED_ID, stream=True, **LONG_ANSWER)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=holder, timeout=120) as held:
        lines = held.iter_lines()  # kept referenced: a discarded iterator closes the stream
        assert next(lines).startswith("data: ")
        queued = chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], stream=stream)
        answer = background.submit(post, router, queued, marker)
        wait_until(lambda: queue_depth(router, TAPPED_ID) == 1, timeout_s=30, interval_s=0.02)

        assert cancel(router, marker).status_code == 202

        assert_cancelled_envelope(answer.result(timeout=30))
        assert queue_depth(router, TAPPED_ID) == 0
    # The holder hung up, so the slot is free: anything still queued would go upstream now, before this.
    assert httpx.post(router.url + "/v1/chat/completions", json=chat_body(model=TAPPED_ID), timeout=120).is_success
    assert not [request for request in tap.requests() if marker.encode() in request.body]


def test_cancelling_an_unknown_or_finished_request_is_a_404_request_not_found(router: ServiceProcess) -> None:
    finished = f"cancel-finished-{uuid.uuid4().hex}"
    assert post(router, chat_body(), finished).status_code == 200

    for request_id in (finished, "no-such-request"):
        response = cancel(router, request_id)
        assert response.status_code == 404
        assert response.json()["error"] == {
            "message": f"no inference request {request_id!r} in flight: unknown, or already finished",
            "type": "not_found_error",
            "param": "request_id",
            "code": "request_not_found",
        }
