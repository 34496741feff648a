"""A passive TCP relay that keeps a copy of every byte a client sends through it.

Whether the router strips its own request fields before forwarding is only visible on
the wire to the runtime: llama-server ignores unknown JSON keys and logs no request
bodies. Putting this relay between the router and a *real* llama-server lets a test
read exactly what went upstream while the real server still answers every request.
Given ``headers``, it adds them to every request on the way (the router's own llama-server
children want their API key), while recording the bytes as the client sent them. Given
``reply_delay``, it holds each chunk of a reply back for as long as that function says,
judging by what the client has sent on the connection: a slow network, for one kind of request.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


def parse_requests(stream: bytes) -> list[RecordedRequest]:
    """Split one connection's client bytes into HTTP/1.1 requests (Content-Length framed)."""
    requests = []
    while stream:
        head, separator, rest = stream.partition(b"\r\n\r\n")
        if not separator:
            break
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)
        }
        length = int(headers.get("content-length", "0"))
        method, path, _ = request_line.split(" ", 2)
        requests.append(RecordedRequest(method, path, rest[:length], headers))
        stream = rest[length:]
    return requests


Headers = Callable[[], Mapping[str, str]]
#: Seconds to hold back each reply chunk, given the client's bytes on that connection so far.
ReplyDelay = Callable[[bytes], float]


class _HeaderAdder:
    """Adds ``headers()`` to each request head of one client's byte stream (Content-Length framed)."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers
        self._head = b""
        self._body_left = 0

    def __call__(self, chunk: bytes) -> bytes:
        out = bytearray()
        while chunk:
            if self._body_left:
                body, chunk = chunk[: self._body_left], chunk[self._body_left :]
                out += body
                self._body_left -= len(body)
                continue
            self._head, chunk = self._head + chunk, b""
            head, separator, rest = self._head.partition(b"\r\n\r\n")
            if not separator:
                break
            self._head, chunk = b"", rest
            fields = (line.partition(":") for line in head.decode("latin-1").split("\r\n")[1:])
            length = next((int(value) for name, _, value in fields if name.strip().lower() == "content-length"), 0)
            extra = "".join(f"{name}: {value}\r\n" for name, value in self._headers().items())
            out += head + b"\r\n" + extra.encode("latin-1") + b"\r\n"
            self._body_left = length
        return bytes(out)


class Wiretap:
    """Listens on a free 127.0.0.1 port; each connection is piped to ``target()``'s port."""

    def __init__(
        self, target: Callable[[], int], headers: Headers | None = None, reply_delay: ReplyDelay | None = None
    ) -> None:
        self._target = target
        self._add_headers = headers
        self._reply_delay = reply_delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._connections: list[bytearray] = []
        self._ended: dict[int, float] = {}  # id() of a connection's record -> when its client ended it
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    def requests(self) -> list[RecordedRequest]:
        """Every complete request clients have sent so far, connection by connection."""
        with self._lock:
            streams = [bytes(recorded) for recorded in self._connections]
        return [request for stream in streams for request in parse_requests(stream)]

    def ended_at(self, marker: bytes) -> float | None:
        """When (``time.monotonic()``) the client ended the connection that carried ``marker``;
        None while it is open. The router closes an upstream connection to cancel a request."""
        with self._lock:
            carrying = [recorded for recorded in self._connections if marker in recorded]
            return next((self._ended[id(r)] for r in carrying if id(r) in self._ended), None)

    def start(self) -> None:
        self._spawn(self._accept_loop)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target()), timeout=10)
            except Exception:
                client.close()  # the client sees a dropped connection; the tap keeps accepting
                continue
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            recorded = bytearray()
            with self._lock:
                self._connections.append(recorded)
            rewrite = _HeaderAdder(self._add_headers) if self._add_headers else None
            self._spawn(lambda c=client, u=upstream, r=recorded, w=rewrite: self._pipe(c, u, r, w))
            delay = (lambda r=recorded: self._reply_delay(bytes(r))) if self._reply_delay else None
            self._spawn(lambda c=client, u=upstream, d=delay: self._pipe(u, c, None, delay=d))

    def _pipe(
        self,
        source: socket.socket,
        sink: socket.socket,
        recorded: bytearray | None,
        rewrite: Callable[[bytes], bytes] | None = None,
        delay: Callable[[], float] | None = None,
    ) -> None:
        try:
            while chunk := source.recv(65536):
                if recorded is not None:
                    with self._lock:
                        recorded += chunk
                if delay is not None:
                    time.sleep(delay())
                if rewrite is not None:
                    try:
                        chunk = rewrite(chunk)
                    except Exception:
                        return
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            if recorded is not None:
                with self._lock:
                    self._ended[id(recorded)] = time.monotonic()
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in list(self._sockets):
            sock.close()
        for thread in list(self._threads):
            thread.join(timeout=2)


@contextmanager
def wiretap(
    target: Callable[[], int], headers: Headers | None = None, reply_delay: ReplyDelay | None = None
) -> Iterator[Wiretap]:
    """A running :class:`Wiretap`, closed (threads joined) when the block exits."""
    tap = Wiretap(target, headers, reply_delay)
    tap.start()
    try:
        yield tap
    finally:
        tap.close()
