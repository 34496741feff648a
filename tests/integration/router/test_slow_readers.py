"""Streaming clients that stop reading cannot hold a model's slots: after
``stream_send_timeout_s`` without accepting a byte their streams are cancelled upstream."""

from __future__ import annotations

import array
import fcntl
import json
import socket
import termios
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

SEND_TIMEOUT_S = 3.0
SERVED_WITHIN_S = SEND_TIMEOUT_S + 5.0


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """Two slots, a queue in which the third client can wait, and a short send timeout."""
    model = smollm2(preload=True, parallel=2, ctx_size=4096, queue_size=4, stream_send_timeout_s=SEND_TIMEOUT_S)
    return start_router({SMOLLM2_ID: model}, wait_ready=True, queue_timeout_s=60)


def unread_bytes(sock: socket.socket) -> int:
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


@contextmanager
def slow_reader(service: ServiceProcess) -> Iterator[socket.socket]:
    """A streaming request from a client with a tiny receive buffer that never reads.

    Top logprobs make every event ~2 KB, so the socket buffers between router and client
    fill after a few dozen tokens.
    """
    body = chat_body(max_tokens=1500, ignore_eos=True, stream=True, logprobs=True, top_logprobs=20)
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


def stalled(sock: socket.socket, quiet_s: float = 1.0) -> bool:
    """True once nothing more arrives on ``sock`` for ``quiet_s``: the router's send is blocked."""
    before = unread_bytes(sock)
    time.sleep(quiet_s)
    return before > 0 and unread_bytes(sock) == before


def test_third_client_is_served_while_two_slow_readers_hold_both_slots(router: ServiceProcess) -> None:
    metrics = lambda: httpx.get(router.url + "/metrics").text  # noqa: E731
    with ExitStack() as stack:
        readers = [stack.enter_context(slow_reader(router)) for _ in range(2)]
        wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 2, timeout_s=30)
        wait_until(lambda: all(stalled(reader) for reader in readers), timeout_s=60, interval_s=0)
        started = time.monotonic()
        response = httpx.post(router.url + "/v1/chat/completions", json=chat_body(), timeout=SERVED_WITHIN_S + 30)
        waited = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert waited <= SERVED_WITHIN_S, f"third client served after {waited:.1f}s (bound {SERVED_WITHIN_S:g}s)"
    count = sample(metrics(), "inference_slow_reader_cancellations_total", model=SMOLLM2_ID)
    assert count == 2, count
