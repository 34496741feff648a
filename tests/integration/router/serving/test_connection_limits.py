"""Connections that never finish their headers are closed, requests whose body does not
arrive in time get 408 and are closed; past ``max_connections`` the router answers 503
instead of taking on more work than it has descriptors for."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.configs import wait_until
from tests.support.service import ServiceProcess
from tests.support.timing import Budget

pytestmark = pytest.mark.integration

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 3.0
#: The router's share after the body deadline: its timer callbacks writing 408 and closing.
ANSWER_AFTER_DEADLINE_S = 1.0
#: The router's share of closing 300 slow connections after their header deadline (and this
#: test's own round over them, a trickle every 0.5 s).
SLOWLORIS_CLOSE_S = 3.0
MAX_CONNECTIONS = 40
SLOWLORIS = 300
TRICKLE_INTERVAL_S = 0.5
CHAT = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
#: A body declared at 100000 bytes that stops after 11.
STALLED_BODY = b'Content-Length: 100000\r\n\r\n{"messages"'


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    # The guards act before any route: no model needs to run (this remote one is never asked).
    unused = {"runtime": "remote", "url": "http://127.0.0.1:9"}
    return start_router(
        {"unused": unused},
        header_timeout_s=HEADER_TIMEOUT_S,
        body_timeout_s=BODY_TIMEOUT_S,
        max_connections=MAX_CONNECTIONS,
    )


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


def read_until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """Everything the router sends until it closes the connection (what came before a reset,
    if it resets it); None if the connection is still open at ``deadline`` (monotonic)."""
    received = b""
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


def status_headers_error(answer: bytes) -> tuple[int, dict[bytes, bytes], dict[str, str]]:
    """A raw HTTP answer's status, headers (lower-cased names) and error envelope."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = dict(line.lower().split(b": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, json.loads(body)["error"]


def wait_out_a_body_deadline(router: ServiceProcess) -> None:
    """Open a connection whose body stalls and wait until the router cuts it: proof that a body
    deadline started now has fired (a sleep would only guess how late a busy router fires it)."""
    with open_sockets(router, 1, CHAT + STALLED_BODY) as (witness,):
        answer = read_until_closed(witness, time.monotonic() + BODY_TIMEOUT_S + 60)
    assert answer is not None, "the witness's body deadline never fired"


def test_slowloris_connections_are_closed_after_the_header_timeout(router: ServiceProcess) -> None:
    """300 clients trickle a header line every half second and never end their headers."""
    budget = Budget(fixed_s=HEADER_TIMEOUT_S, cpu_s=SLOWLORIS_CLOSE_S).seconds
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


@pytest.fixture
def every_connection_taken(router: ServiceProcess) -> Iterator[None]:
    """``max_connections`` idle connections open; once they close, the router admits again."""
    with open_sockets(router, MAX_CONNECTIONS, b""):
        yield
    wait_until(lambda: httpx.get(router.url + "/health", timeout=10).status_code == 200, timeout_s=10)


@pytest.mark.usefixtures("every_connection_taken")
def test_past_max_connections_an_ollama_request_gets_the_503_in_ollamas_envelope(router: ServiceProcess) -> None:
    response = httpx.get(router.url + "/api/tags", timeout=10)
    assert response.status_code == 503
    assert response.json() == {"error": "the server has too many open connections: retry shortly"}


def test_a_stalled_messages_body_gets_the_408_in_anthropics_envelope(router: ServiceProcess) -> None:
    messages = CHAT.replace(b"/v1/chat/completions", b"/v1/messages")
    with open_sockets(router, 1, messages + STALLED_BODY) as (sock,):
        answer = read_until_closed(sock, time.monotonic() + BODY_TIMEOUT_S + 60)
    assert answer is not None, "the stalled body was never answered"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout")
    assert json.loads(body)["type"] == "error" and json.loads(body)["error"]["code"] == "body_timeout"


def test_stalled_bodies_get_408_at_the_body_timeout_and_free_their_connections(router: ServiceProcess) -> None:
    """The reported attack: every slot held by a body declared at 100000 bytes that stops after 11."""
    stalled = CHAT + STALLED_BODY
    answered_within = Budget(fixed_s=BODY_TIMEOUT_S, cpu_s=ANSWER_AFTER_DEADLINE_S)
    opened = time.monotonic()
    with open_sockets(router, MAX_CONNECTIONS, stalled) as sockets:
        sent = time.monotonic()
        assert httpx.get(router.url + "/health", timeout=10).status_code == 503  # the stalled bodies hold every slot
        first = read_until_closed(sockets[0], sent + answered_within.seconds)
        first_answered_after = time.monotonic() - opened
        answers = [first, *(read_until_closed(sock, sent + answered_within.seconds) for sock in sockets[1:])]
        assert None not in answers, (
            f"{answers.count(None)} of {MAX_CONNECTIONS} stalled bodies still open after {answered_within}"
        )
        assert first_answered_after >= BODY_TIMEOUT_S, f"answered {first_answered_after:.2f}s after the headers"
        # The close reaches a client only after the router has given up the connection: its slot is free.
        assert httpx.get(router.url + "/health", timeout=10).status_code == 200
    for status, headers, error in map(status_headers_error, answers):  # type: ignore[arg-type]
        assert (status, headers[b"connection"], error["type"], error["code"]) == (
            408,
            b"close",
            "invalid_request_error",
            "body_timeout",
        )


def test_a_body_timeout_is_logged_as_a_closed_request_not_as_an_error(router: ServiceProcess) -> None:
    """The app, still reading the body, sees the connection lost: an access line with 499, no traceback."""
    logged_before = len(router.log())
    stalled = CHAT + b"X-Request-ID: stalled-body\r\n" + STALLED_BODY
    with open_sockets(router, 1, stalled) as (sock,):
        answer = read_until_closed(sock, time.monotonic() + BODY_TIMEOUT_S + 10)
    assert answer is not None and status_headers_error(answer)[0] == 408
    access_line = "[stalled-body] POST /v1/chat/completions 499 "
    wait_until(lambda: access_line in router.log()[logged_before:], timeout_s=10)
    assert "Traceback" not in router.log()[logged_before:]


def test_a_trickled_chunked_body_is_cut_off_at_the_body_timeout(router: ServiceProcess) -> None:
    """A chunk of one byte of JSON whitespace every half second: never idle, never complete."""
    cut_within = Budget(fixed_s=BODY_TIMEOUT_S, cpu_s=ANSWER_AFTER_DEADLINE_S)
    opened = time.monotonic()
    with open_sockets(router, 1, CHAT + b"Transfer-Encoding: chunked\r\n\r\n") as (sock,):
        sent = time.monotonic()
        while time.monotonic() - sent < cut_within.seconds:
            with contextlib.suppress(OSError):
                sock.sendall(b"1\r\n \r\n")
            if select.select([sock], [], [], TRICKLE_INTERVAL_S)[0]:
                break
        cut_after = time.monotonic() - opened
        answer = read_until_closed(sock, sent + cut_within.seconds)
    assert answer is not None, f"a trickled body is still being read after {cut_within}"
    assert cut_after >= BODY_TIMEOUT_S, f"cut off {cut_after:.2f}s after the headers"
    # Its 408 can be lost to a reset if a byte arrives as the router closes; the cut is what matters.
    assert answer == b"" or status_headers_error(answer)[0] == 408, answer


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_large_body_sent_slowly_within_the_body_timeout_is_served(router: ServiceProcess, chunked: bool) -> None:
    """Headers over most of their deadline, then 1 MB in four pieces over most of the body's:
    longer than the body deadline from the first byte, within each deadline from its start."""
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 1_000_000}], "model": "sent-slowly"}).encode()
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % len(body)
    pieces = [body[start : start + len(body) // 4 + 1] for start in range(0, len(body), len(body) // 4 + 1)]
    with open_sockets(router, 1, CHAT) as (sock,):
        time.sleep(HEADER_TIMEOUT_S * 0.75)
        sock.sendall(framing + b"Connection: close\r\n\r\n")
        for piece in pieces:
            time.sleep(BODY_TIMEOUT_S * 0.6 / len(pieces))
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        answer = read_until_closed(sock, time.monotonic() + 30)
    assert answer is not None
    status, _, error = status_headers_error(answer)
    # The router parsed the whole JSON (a truncated one is a 400): the model it names is unknown.
    assert (status, error["code"]) == (404, "model_not_found"), answer
    assert "sent-slowly" in error["message"]


def test_a_kept_alive_connection_is_not_timed_once_its_body_is_complete(router: ServiceProcess) -> None:
    host, port = router.url.removeprefix("http://").split(":")
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "model": "kept-alive"})
    with contextlib.closing(http.client.HTTPConnection(host, int(port), timeout=10)) as connection:
        for _ in range(2):
            connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())["error"]["code"]) == (404, "model_not_found")
            wait_out_a_body_deadline(router)
            assert not closed_by_peer(connection.sock), "the idle kept-alive connection was closed"
            connection.sock.settimeout(10)


def test_a_stream_is_not_cut_by_the_body_deadline_of_a_request_pipelined_behind_it(router: ServiceProcess) -> None:
    """The pipelined request's body waits while the stream before it is answered: not the client's delay."""
    stream = b"GET /v1/events?types=config_reload HTTP/1.1\r\nHost: x\r\n\r\n"
    pipelined = CHAT + STALLED_BODY
    with open_sockets(router, 1, stream + pipelined) as (sock,):
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        wait_out_a_body_deadline(router)
        assert not closed_by_peer(sock), "the stream was cut at the pipelined request's body deadline"
        assert httpx.post(router.url + "/admin/reload", timeout=30).json()["ok"] is True
        sock.settimeout(10)
        received = b""
        while b"config_reload" not in received and (chunk := sock.recv(65536)):
            received += chunk
        assert b"config_reload" in received and b"408" not in received, received
