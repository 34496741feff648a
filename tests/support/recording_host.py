"""An HTTP server that answers every request 200 and records what it was asked, as sent.

For tests of what the router sends a ``remote`` model's host - which path, with which
credentials - where a real runtime would not show it (and a wrong path must be seen, not
merely answered 404). ``reply`` is the body of every answer (an OpenAI-shaped one carries
``usage``, as a runtime's does); while ``hold`` is clear, answers (but to health probes) wait
for it: requests in flight, on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # the request target as it arrived, not normalised
    authorization: str | None


class RecordingHost:
    def __init__(self, server: ThreadingHTTPServer, reply: bytes) -> None:
        self._server = server
        self.seen: list[Seen] = []
        self.reply = reply
        self.hold = threading.Event()
        self.hold.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]


@contextmanager
def recording_host(reply: bytes = b'{"status":"ok"}') -> Iterator[RecordingHost]:
    """A :class:`RecordingHost` answering ``reply`` on a free 127.0.0.1 port until the block exits."""
    host: RecordingHost

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            host.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
            if not self.path.endswith("/health"):  # the router's health probes are never held
                host.hold.wait()
            body = host.reply
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # the names http.server dispatches to

        def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads `seen`
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.protocol_version = "HTTP/1.1"
    host = RecordingHost(server, reply)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.hold.set()  # nothing left waiting
        server.shutdown()
        server.server_close()
