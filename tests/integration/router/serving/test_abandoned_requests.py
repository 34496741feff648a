"""Clients that hang up: a running non-streaming request is let go upstream within a second,
a queued one - streaming or not - leaves the queue and never goes upstream, and all are
counted as 499."""

from __future__ import annotations

import time
import uuid
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import TAPPED_ID, chat_body, child_url
from tests.support.api import abandoned_post, child_headers
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess
from tests.support.timing import Budget
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

#: The spec: the router lets go of an abandoned request within 1 s (its own work, stretched by load).
ROUTER_RELEASE_S = 1.0
#: llama-server checks a waiting non-streaming request's connection once a second passes with no
#: result for any request (a /slots answer is one): slots are polled more slowly than that.
LLAMA_SERVER_CHECK_S = 1.5


def slots(service: ServiceProcess) -> list[dict[str, Any]]:
    return httpx.get(child_url(service, SMOLLM2_ID) + "/slots", headers=child_headers(service, SMOLLM2_ID)).json()  # type: ignore[no-any-return]


def busy_slots(service: ServiceProcess) -> int:
    return sum(slot["is_processing"] for slot in slots(service))


def generating_slots(service: ServiceProcess) -> int:
    """Slots past their prompt, producing tokens (a cancel takes effect between two tokens)."""
    return sum(slot["is_processing"] and slot["next_token"][0]["n_decoded"] > 0 for slot in slots(service))


def requests_total(service: ServiceProcess, model_id: str, status: str) -> float:
    metrics = httpx.get(service.url + "/metrics").text
    return (
        sample(metrics, "inference_requests_total", model=model_id, endpoint="chat/completions", status=status) or 0.0
    )


def queue_depth(service: ServiceProcess, model_id: str) -> float:
    return sample(httpx.get(service.url + "/metrics").text, "inference_queue_depth", model=model_id) or 0.0


def test_an_abandoned_running_request_is_let_go_upstream_within_a_second(router: ServiceProcess, tap: Wiretap) -> None:
    """The router's own share, seen on the wire by the tap before llama-server: from the
    client's hang-up to the router closing the upstream connection. (llama-server then frees
    the slot at its next connection check - its own poll, which on a busy machine varied from
    2 to 10 s and is no measure of the router.)"""
    release = Budget(fixed_s=0, cpu_s=ROUTER_RELEASE_S)  # before the work: its own load must not loosen it
    marker = f"running-{uuid.uuid4().hex}"
    closed_before = requests_total(router, TAPPED_ID, "499")
    body = chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], max_tokens=1000, ignore_eos=True)
    wait_until(lambda: busy_slots(router) == 0, timeout_s=60)
    with abandoned_post(router.url, body):
        wait_until(lambda: generating_slots(router) == 1, timeout_s=60, interval_s=0.02)
    hung_up = time.monotonic()
    ended = wait_until(lambda: tap.ended_at(marker.encode()), timeout_s=60)
    assert ended - hung_up < release.seconds, f"upstream let go {ended - hung_up:.2f}s after the hang-up ({release})"
    # And llama-server frees the slot, at a connection check that each /slots answer puts off.
    wait_until(lambda: busy_slots(router) == 0, timeout_s=120, interval_s=LLAMA_SERVER_CHECK_S)
    wait_until(lambda: requests_total(router, TAPPED_ID, "499") - closed_before == 1, timeout_s=5)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_abandoned_queued_requests_never_go_upstream(router: ServiceProcess, tap: Wiretap, stream: bool) -> None:
    """The tapped route admits one request at a time: a stream holds it while three more queue."""
    marker = f"abandoned-{uuid.uuid4().hex}"
    served_before = requests_total(router, TAPPED_ID, "200")
    closed_before = requests_total(router, TAPPED_ID, "499")
    holder = chat_body(model=TAPPED_ID, max_tokens=1000, ignore_eos=True, stream=True)
    with httpx.stream("POST", router.url + "/v1/chat/completions", json=holder, timeout=60) as held:
        lines = held.iter_lines()  # kept referenced: a discarded iterator closes the stream
        assert next(lines).startswith("data: ")
        queued = chat_body(model=TAPPED_ID, messages=[{"role": "user", "content": marker}], stream=stream)
        with ExitStack() as clients:
            for _ in range(3):
                clients.enter_context(abandoned_post(router.url, queued))
            wait_until(lambda: queue_depth(router, TAPPED_ID) == 3, timeout_s=10, interval_s=0.02)
        wait_until(lambda: queue_depth(router, TAPPED_ID) == 0, timeout_s=1.0, interval_s=0.02)
    # The holder hung up too, so the slot is free: anything still queued would go upstream
    # now, before this request.
    response = httpx.post(router.url + "/v1/chat/completions", json=chat_body(model=TAPPED_ID), timeout=120)
    assert response.status_code == 200, response.text
    assert not [request for request in tap.requests() if marker.encode() in request.body]
    assert requests_total(router, TAPPED_ID, "499") - closed_before == 4  # three queued and the holder
    assert requests_total(router, TAPPED_ID, "200") - served_before == 1
