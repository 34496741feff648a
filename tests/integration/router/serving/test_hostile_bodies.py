"""Hostile request bodies: a huge chunked upload and pathologically nested JSON.

Neither needs a model: the router must refuse both before any model is touched, without
holding the body in memory and without spoiling the client's keep-alive connection.
"""

from __future__ import annotations

import json
import socket
import threading

import httpx
import psutil
import pytest

from tests.integration.router.conftest import StartRouter
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 64 * 1024
UPLOAD_BYTES = 200 * 2**20
RSS_GROWTH_LIMIT = 20 * 10**6
PIECE = 1 << 16
MODEL_ID = "unreachable"


@pytest.fixture(scope="module")
def router(start_router: StartRouter) -> ServiceProcess:
    """The one model is a remote nobody serves: every request here must be refused before a model is needed."""
    return start_router({MODEL_ID: {"runtime": "remote", "url": "http://127.0.0.1:9"}}, max_body_bytes=MAX_BODY_BYTES)


def _chunked_upload(url: str, total_bytes: int) -> tuple[bytes, int]:
    """POST ``total_bytes`` with ``Transfer-Encoding: chunked`` over a raw socket.

    A reader thread collects the answer while the body is still being sent, as a real
    client would; returns (the response bytes, how many body bytes the router accepted).
    """
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    answer = bytearray()

    def read() -> None:
        while chunk := sock.recv(65536):
            answer.extend(chunk)
            if b"\r\n\r\n" in answer:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent = 0
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b"%x\r\n" % PIECE + (b'{"messages":[' + b" " * PIECE)[:PIECE] + b"\r\n"
    try:
        sock.sendall(head)
        while sent < total_bytes and reader.is_alive():
            sock.sendall(piece)
            sent += PIECE
        sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the router stopped reading and closed: that is the point
    reader.join(timeout=30)
    sock.close()
    return bytes(answer), sent


def test_chunked_upload_over_the_limit_is_refused_without_buffering_it(router: ServiceProcess) -> None:
    process = psutil.Process(router.pid)
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        answer, sent = _chunked_upload(router.url, UPLOAD_BYTES)
    finally:
        done.set()
        sampler.join()
    assert peak - before <= RSS_GROWTH_LIMIT, f"router RSS grew {(peak - before) / 1e6:.1f} MB for a refused upload"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < UPLOAD_BYTES, "the router read the whole 200 MiB before refusing it"


def test_chunked_upload_over_the_limit_gets_the_envelope_and_connection_close(router: ServiceProcess) -> None:
    def body() -> object:
        for _ in range(2 * MAX_BODY_BYTES // PIECE + 1):
            yield b" " * PIECE

    with httpx.Client(base_url=router.url, timeout=30) as client:
        response = client.post("/v1/chat/completions", content=body(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["connection"] == "close"


def _nested(depth: int) -> bytes:
    return (
        b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "x": ' % MODEL_ID.encode()
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


@pytest.mark.parametrize("depth", [65, 10_000, 30_000])
def test_deeply_nested_json_is_a_400_and_the_connection_stays_usable(router: ServiceProcess, depth: int) -> None:
    with httpx.Client(base_url=router.url, timeout=30) as client:
        response = client.post(
            "/v1/chat/completions", content=_nested(depth), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "nesting_too_deep"
        assert "64" in response.json()["error"]["message"]
        # The next request on the same pooled connection must work.
        assert client.get("/health").status_code == 200
    assert router.process.poll() is None


def test_brackets_inside_strings_do_not_count_as_nesting(router: ServiceProcess) -> None:
    """A prompt full of brackets is ordinary text: it must get past the depth check
    (and fail later, on the unknown model, with 404)."""
    body = {"model": "no-such-model", "messages": [{"role": "user", "content": "[" * 5000 + '\\"{' * 100}]}
    response = httpx.post(router.url + "/v1/chat/completions", json=body, timeout=30)
    assert response.status_code == 404, response.text


def test_nesting_at_the_limit_is_accepted(router: ServiceProcess) -> None:
    """63 levels of brackets under the top-level object: 64 in all, allowed (404 for the unknown model)."""
    body = (
        b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "x": '
        + b"[" * 63
        + b"]" * 63
        + b"}"
    )
    response = httpx.post(router.url + "/v1/chat/completions", content=body, timeout=30)
    assert response.status_code == 404, response.text


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e309", "-1e400"])
def test_a_number_json_cannot_carry_is_a_400_naming_it(router: ServiceProcess, number: str) -> None:
    """Python's json reads these (NaN, inf); forwarded, they would reach the runtime as invalid JSON."""
    body = b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}], "temperature": %s}' % (
        MODEL_ID.encode(),
        number.encode(),
    )
    response = httpx.post(
        router.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert (
        response.json()["error"]["code"] == "invalid_json" and number.lstrip("-") in response.json()["error"]["message"]
    )


def test_ordinary_floats_and_large_exponents_in_range_are_accepted(router: ServiceProcess) -> None:
    body = (
        b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.7, "x": 1e308}'
    )
    response = httpx.post(
        router.url + "/v1/chat/completions", content=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 404, response.text  # past the body checks: the unknown model


MALFORMED = {
    "two_content_lengths": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "chunked_and_content_length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "bad_chunk_size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    "bad_request_line": b"GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "no_host": b"GET /health HTTP/1.1\r\n\r\n",  # RFC 9112 section 3.2: exactly one Host
    "two_hosts": b"GET /health HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
}


def _exchange(router: ServiceProcess, request_bytes: bytes) -> bytes:
    """Send raw bytes, read the answer until the router closes the connection."""
    host, port = router.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("request_bytes", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_request_that_is_not_valid_http_gets_a_400_envelope_and_the_connection_closes(
    router: ServiceProcess, request_bytes: bytes
) -> None:
    answer = _exchange(router, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower() and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == {
        "message": json.loads(body)["error"]["message"],
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_http",
    }


def test_an_http_1_0_request_needs_no_host_header(router: ServiceProcess) -> None:
    answer = _exchange(router, b"GET /health HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200"), answer
