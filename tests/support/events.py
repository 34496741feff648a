"""Listening to a Server-Sent Events endpoint (``/v1/events``, a log follow) from a test.

A background thread reads the stream line by line as a client would and keeps every
``data:`` payload; the test waits for the events it expects with a deadline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

Event = dict[str, Any]


class EventStream:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.status: int | None = None
        self.opened = threading.Event()
        self._changed = threading.Condition()

    def add(self, event: Event) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[Event], bool], timeout_s: float) -> Event:
        """The first event (received so far or later) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching event within {timeout_s:g}s; got {self.events[-10:]}")
                self._changed.wait(remaining)

    def matching(self, predicate: Callable[[Event], bool]) -> list[Event]:
        with self._changed:
            return [event for event in self.events if predicate(event)]


@contextmanager
def listening(
    url: str, headers: Mapping[str, str] | None = None, open_timeout_s: float = 30.0
) -> Iterator[EventStream]:
    """Stream ``url`` in a thread until the block exits; returns once the stream is open."""
    stream = EventStream()
    stop = threading.Event()
    client = httpx.Client(timeout=httpx.Timeout(10.0, read=None))
    responses: list[httpx.Response] = []

    def read() -> None:
        try:
            with client.stream("GET", url, headers=dict(headers or {})) as response:
                responses.append(response)
                stream.status = response.status_code
                stream.opened.set()
                for line in response.iter_lines():
                    if stop.is_set():
                        return
                    if line.startswith("data: "):
                        stream.add(json.loads(line[len("data: ") :]))
        except (httpx.HTTPError, OSError, RuntimeError):
            pass  # closed by the test (or the service went away): the test's waits report it
        finally:
            stream.opened.set()

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    if not stream.opened.wait(open_timeout_s):
        raise TimeoutError(f"{url} did not open within {open_timeout_s:g}s")
    try:
        yield stream
    finally:
        stop.set()
        for response in responses:
            # Shut the socket itself: closing the response from this thread would wait for the
            # reading thread, which is blocked in a read until the next event or keep-alive.
            response.extensions["network_stream"].get_extra_info("socket").shutdown(socket.SHUT_RDWR)
        client.close()
        thread.join(timeout=5.0)
