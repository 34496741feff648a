"""Clients that hang up: a running non-streaming request frees its llama-server slot at once,
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
from tests.support.timing import measured
from tests.support.wiretap import Wiretap

pytestmark = pytest.mark.integration

#: llama-server checks a waiting non-streaming request's connection when a second passes
#: with no result for any request (its HTTP_POLLING_SECONDS; every result - a /slots query
#: included - restarts that wait). That second comes on top of the spec's 1 s.
LLAMA_SERVER_POLL_S = 1.0
#: The spec: the router lets go of an abandoned request within 1 s.
ROUTER_RELEASE_S = 1.0


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


def probe(service: ServiceProcess) -> httpx.Response:
    """A one-token request straight to llama-server: it starts as soon as a slot is free."""
    return httpx.post(
        child_url(service, SMOLLM2_ID) + "/v1/chat/completions",
        json=chat_body(max_tokens=1),
        headers=child_headers(service, SMOLLM2_ID),
        timeout=120,
    )


def test_abandoned_running_requests_free_their_slots_within_a_second(router: ServiceProcess) -> None:
    """Both slots run abandoned 1000-token answers; a one-token request sent straight to
    llama-server (which posts no result that would delay its connection checks) gets a
    slot as soon as one is freed - measured by llama-server itself, not by router state."""
    wait_until(lambda: busy_slots(router) == 0, timeout_s=60)
    closed_before = requests_total(router, SMOLLM2_ID, "499")
    probe_started = time.monotonic()
    assert probe(router).status_code == 200  # the probe on an idle child, timed under today's load
    budget = measured(ROUTER_RELEASE_S, LLAMA_SERVER_POLL_S + time.monotonic() - probe_started)
    body = chat_body(max_tokens=1000, ignore_eos=True)
    with ExitStack() as clients:
        for _ in range(2):
            clients.enter_context(abandoned_post(router, body))
        wait_until(lambda: generating_slots(router) == 2, timeout_s=60, interval_s=0.02)
    hung_up = time.monotonic()
    answer = probe(router)
    freed = time.monotonic() - hung_up
    assert answer.status_code == 200, answer.text
    assert freed < budget.seconds, f"a slot was free {freed:.2f}s after the clients hung up (budget {budget})"
    wait_until(lambda: busy_slots(router) == 0, timeout_s=budget.seconds, interval_s=0.2)
    wait_until(lambda: requests_total(router, SMOLLM2_ID, "499") - closed_before == 2, timeout_s=5)


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
                clients.enter_context(abandoned_post(router, queued))
            wait_until(lambda: queue_depth(router, TAPPED_ID) == 3, timeout_s=10, interval_s=0.02)
        wait_until(lambda: queue_depth(router, TAPPED_ID) == 0, timeout_s=1.0, interval_s=0.02)
    # The holder hung up too, so the slot is free: anything still queued would go upstream
    # now, before this request.
    response = httpx.post(router.url + "/v1/chat/completions", json=chat_body(model=TAPPED_ID), timeout=120)
    assert response.status_code == 200, response.text
    assert not [request for request in tap.requests() if marker.encode() in request.body]
    assert requests_total(router, TAPPED_ID, "499") - closed_before == 4  # three queued and the holder
    assert requests_total(router, TAPPED_ID, "200") - served_before == 1
