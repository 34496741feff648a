"""Streaming clients that stop reading cannot hold a model's slots: after
``stream_send_timeout_s`` without accepting a byte their streams are cancelled upstream."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess
from tests.support.timing import Budget

pytestmark = pytest.mark.integration

#: Long enough for a stall to be seen (a token for each reader) before it ends in a cancel.
SEND_TIMEOUT_S = 5.0
#: After the send timeout: llama-server noticing the cancel, then the third prompt and its tokens.
SERVED_AFTER_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """Two slots, a queue in which the third client can wait, and a short send timeout."""
    model = smollm2(preload=True, parallel=2, ctx_size=4096, queue_size=4, stream_send_timeout_s=SEND_TIMEOUT_S)
    return start_router({SMOLLM2_ID: model}, wait_ready=True, queue_timeout_s=60, max_logprobs=5000)


def router_send_queue(sock: socket.socket) -> int:
    """Bytes the router has written towards ``sock`` that ``sock`` has not taken (the router
    side's tx_queue in /proc/net/tcp): they pile up in the router's socket buffer while the
    client reads nothing, until the buffer is full and the router's send blocks."""
    client_port = sock.getsockname()[1]
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port:
            return int(fields[4].split(":")[0], 16)
    return 0


@contextmanager
def slow_reader(service: ServiceProcess) -> Iterator[socket.socket]:
    """A streaming request from a client with a tiny receive buffer that never reads.

    The router's socket buffer grows to a few MB before its send blocks; 5000 top logprobs
    make each event ~400 KB, so that takes about ten tokens (a hundred with 500, ~40 KB each:
    minutes on a busy machine, where a token can take a second).
    """
    body = chat_body(max_tokens=1500, ignore_eos=True, stream=True, logprobs=True, top_logprobs=5000)
    payload = json.dumps(body).encode()
    host, port = service.url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.connect((host, int(port)))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        yield sock
    finally:
        sock.close()


def decoded_tokens(service: ServiceProcess) -> int:
    """Tokens llama-server has generated in its current tasks, over all slots."""
    port = model_card(service, SMOLLM2_ID)["port"]
    slots = httpx.get(f"http://127.0.0.1:{port}/slots", headers=child_headers(service, SMOLLM2_ID)).json()
    return sum(slot["next_token"][0]["n_decoded"] for slot in slots if slot["is_processing"])


def stalled(service: ServiceProcess, readers: list[socket.socket]) -> bool:
    """True once the router forwards nothing more to the readers while llama-server generates a
    token for each of them: the router's sends are blocked on full buffers. Judged by llama-server's
    progress, not over a quiet second: on a busy machine a token can take longer than that."""
    queued, decoded = [router_send_queue(reader) for reader in readers], decoded_tokens(service)
    wait_until(lambda: decoded_tokens(service) >= decoded + len(readers), timeout_s=60, interval_s=0.1)
    return all(queued) and [router_send_queue(reader) for reader in readers] == queued


def test_third_client_is_served_while_two_slow_readers_hold_both_slots(router: ServiceProcess) -> None:
    metrics = lambda: httpx.get(router.url + "/metrics").text  # noqa: E731
    served_within = Budget(fixed_s=SEND_TIMEOUT_S, cpu_s=SERVED_AFTER_TIMEOUT_S)
    with ExitStack() as stack:
        readers = [stack.enter_context(slow_reader(router)) for _ in range(2)]
        wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 2, timeout_s=30)
        wait_until(lambda: stalled(router, readers), timeout_s=120, interval_s=0)
        started = time.monotonic()
        response = httpx.post(router.url + "/v1/chat/completions", json=chat_body(), timeout=served_within.seconds + 30)
        waited = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert waited <= served_within.seconds, f"third client served after {waited:.1f}s (bound {served_within})"
        # One freed slot serves the third client; the other reader's send may block later than the
        # first's, so its cancellation can follow within one more send timeout. The readers stay
        # connected meanwhile: a reader that hung up would end as a client gone, not a slow reader.
        cancelled = lambda: sample(metrics(), "inference_slow_reader_cancellations_total", model=SMOLLM2_ID)  # noqa: E731
        wait_until(lambda: cancelled() == 2, timeout_s=SEND_TIMEOUT_S + 10)
    assert cancelled() == 2
