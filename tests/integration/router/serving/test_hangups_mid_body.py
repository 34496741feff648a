"""Clients that hang up while still sending their request body: a 499 in the access log,
no logged traceback, and nothing of the partial body kept afterwards."""

from __future__ import annotations

import socket
import uuid

import httpx
import psutil
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

#: This module's body cap: room for the multi-megabyte bodies of the retention test.
MAX_BODY_BYTES = 8 * 2**20
#: What a client sends of the body it announced before hanging up.
PARTIAL_BYTES = 3_900_000
HANG_UPS = 20
#: Allowed RSS growth over all the hang-ups: a few bodies' worth of allocator slack, far
#: below the ~HANG_UPS * PARTIAL_BYTES a retained partial body per hang-up amounts to.
RSS_GROWTH_LIMIT = 24 * 2**20
PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/tokenize"]


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """No model needs to run: the body is never complete, so no model is ever resolved."""
    return start_router({SMOLLM2_ID: smollm2()}, max_body_bytes=MAX_BODY_BYTES)


def hang_up_mid_body(service: ServiceProcess, path: str, partial_bytes: int) -> str:
    """Announce a bigger body, send ``partial_bytes`` of it, close; the request id."""
    request_id = f"hangup-{uuid.uuid4().hex[:12]}"
    host, port = service.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\nX-Request-ID: %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), request_id.encode(), partial_bytes + 100_000)
        )
        sock.sendall(b'{"messages":"' + b"x" * (partial_bytes - 13))
    return request_id


def router_log(service: ServiceProcess) -> list[str]:
    return httpx.get(service.url + "/v1/logs", timeout=30).json()["lines"]  # type: ignore[no-any-return]


def access_line(service: ServiceProcess, path: str, partial_bytes: int) -> tuple[str, str]:
    """Hang up mid-body; the request's id and its access line, once the router has noticed.

    The line is found as the first new access line for ``path`` (this module's router serves
    nothing else), whatever request id it shows.
    """
    before = set(router_log(service))
    request_id = hang_up_mid_body(service, path, partial_bytes)
    pattern = f" POST {path} "

    def new_line() -> str | None:
        return next((line for line in router_log(service) if pattern in line and line not in before), None)

    return request_id, wait_until(new_line, timeout_s=30)


def tracebacks(service: ServiceProcess) -> int:
    return sum(line.count("Traceback") for line in router_log(service))


@pytest.mark.parametrize("path", PATHS)
def test_hang_up_mid_body_is_logged_as_499_without_a_traceback(router: ServiceProcess, path: str) -> None:
    before = tracebacks(router)
    request_id, line = access_line(router, path, 60_000)
    assert f"POST {path} 499 " in line and f"[{request_id}]" in line, line
    assert tracebacks(router) == before
    assert "Traceback" not in router.log()


def test_hang_ups_mid_body_keep_nothing_of_their_partial_bodies(router: ServiceProcess) -> None:
    for _ in range(2):  # the allocator's first use of body-sized memory is not growth
        access_line(router, "/v1/chat/completions", PARTIAL_BYTES)
    before = psutil.Process(router.pid).memory_info().rss
    for _ in range(HANG_UPS):
        access_line(router, "/v1/chat/completions", PARTIAL_BYTES)
    growth = psutil.Process(router.pid).memory_info().rss - before
    assert growth < RSS_GROWTH_LIMIT, f"router RSS grew {growth / 2**20:.1f} MiB over {HANG_UPS} hang-ups mid-body"
