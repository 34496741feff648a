"""Connections that never finish their headers are closed; past ``max_connections`` the
router answers 503 instead of taking on more work than it has descriptors for."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import wait_until
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 40
SLOWLORIS = 300


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    # The guards act before any route: no model needs to run (this remote one is never asked).
    unused = {"runtime": "remote", "url": "http://127.0.0.1:9"}
    return start_router({"unused": unused}, header_timeout_s=HEADER_TIMEOUT_S, max_connections=MAX_CONNECTIONS)


@contextlib.contextmanager
def open_sockets(router: ServiceProcess, count: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    host, port = router.url.removeprefix("http://").split(":")
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((host, int(port)), timeout=10)
            if first_bytes:
                sock.sendall(first_bytes)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        sock.settimeout(0.01)
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True  # reset


def test_slowloris_connections_are_closed_after_the_header_timeout(router: ServiceProcess) -> None:
    """300 clients trickle a header line every half second and never end their headers."""
    budget = HEADER_TIMEOUT_S + 3.0
    with open_sockets(router, SLOWLORIS, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n") as sockets:
        opened = time.monotonic()
        alive = list(sockets)
        while alive and time.monotonic() - opened < budget:
            for sock in alive:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Trickle: 1\r\n")
            time.sleep(0.5)
            alive = [sock for sock in alive if not closed_by_peer(sock)]
        assert not alive, f"{len(alive)} of {SLOWLORIS} slow connections still open after {budget:.1f}s"
    assert httpx.get(router.url + "/health", timeout=10).status_code == 200


def test_a_request_that_completes_its_headers_in_time_is_served(router: ServiceProcess) -> None:
    with open_sockets(router, 1, b"GET /health HTTP/1.1\r\n") as (sock,):
        time.sleep(HEADER_TIMEOUT_S / 2)
        sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def test_past_max_connections_a_request_gets_503_with_the_envelope(router: ServiceProcess) -> None:
    with open_sockets(router, MAX_CONNECTIONS, b""):
        response = httpx.get(router.url + "/health", timeout=10)
    assert response.status_code == 503
    assert response.headers["connection"] == "close"
    assert response.json()["error"]["code"] == "too_many_connections"
    # Once the idle connections' close reaches the server, it admits again.
    wait_until(lambda: httpx.get(router.url + "/health", timeout=10).status_code == 200, timeout_s=10)
