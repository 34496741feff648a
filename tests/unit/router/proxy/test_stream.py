"""The one stream engine (EventStream): a client that accepts nothing for send_timeout_s is cut
off, one that hangs up is let go at once, and either way the stream's source is closed before
the response returns - the same for a proxied stream, a streamed orchestration and a feed.

The ASGI server is played by ``send`` and ``receive`` callables: a send that never completes
is what uvicorn's send does once the client's socket buffers are full. The integration test
tests/integration/router/proxy/test_slow_readers.py shows the effect on a real router.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator

from starlette.types import Message

from inference_service.router.observability.metrics import Metrics
from inference_service.router.orchestration import ORCHESTRATED_ENDPOINT, OrchestratedStream
from inference_service.router.proxy.stream import Counted, EventStream, Feed
from tests.unit.router.orchestration.test_plan import TWO, _plan, _services

MODEL = "m"
ENDPOINT = "chat/completions"


class Client:
    """The server side of one connection: what was sent, and a client that may stop reading or hang up."""

    def __init__(self, reads: int | None = None) -> None:
        """``reads``: how many body messages the client takes before it stops reading (None: all)."""
        self.sent: list[Message] = []
        self._reads = reads
        self.hung_up = asyncio.Event()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if self._reads is not None and len(self.bodies) > self._reads:
            await asyncio.Event().wait()  # the socket buffers are full: this send never completes

    async def receive(self) -> Message:
        await self.hung_up.wait()
        return {"type": "http.disconnect"}

    @property
    def bodies(self) -> list[bytes]:
        return [message["body"] for message in self.sent if message["type"] == "http.response.body"]


@contextlib.asynccontextmanager
async def serving(response: EventStream, client: Client) -> AsyncIterator[asyncio.Task[None]]:
    """``response`` run by the server for ``client``, in a task of its own: cancelled on exit if still running."""
    task = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ends(task: asyncio.Task[None], within_s: float) -> bool:
    """Whether ``task`` ends by itself within ``within_s`` (unlike ``asyncio.wait_for``, which
    would end it with a cancellation - one the stream takes as the client's hang-up)."""
    done, _ = await asyncio.wait({task}, timeout=within_s)
    return task in done


async def endless(closed: asyncio.Event) -> AsyncGenerator[bytes, None]:
    try:
        while True:
            await asyncio.sleep(0)
            yield b"data: {}\n\n"
    finally:
        closed.set()


def counted_in(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_send_blocked_past_the_timeout_cuts_the_stream_off_closes_its_source_and_counts_it() -> None:
    closed, metrics, client = asyncio.Event(), Metrics(), Client(reads=3)
    response = EventStream(Feed(endless(closed)), 0.2, Counted(metrics, MODEL, ENDPOINT, time.perf_counter()))

    await asyncio.wait_for(response({"type": "http"}, client.receive, client.send), timeout=5)

    assert closed.is_set()
    assert counted_in(metrics, "inference_slow_reader_cancellations_total", model=MODEL) == 1
    assert counted_in(metrics, "inference_requests_total", model=MODEL, endpoint=ENDPOINT, status="499") == 1


async def test_a_client_that_reads_is_never_cut_off_however_long_the_stream() -> None:
    async def slow_events() -> AsyncGenerator[bytes, None]:
        for _ in range(5):
            await asyncio.sleep(0.05)  # slower than the timeout overall, never per send
            yield b"data: {}\n\n"

    metrics, client = Metrics(), Client()
    response = EventStream(Feed(slow_events()), 0.1, Counted(metrics, MODEL, ENDPOINT, time.perf_counter()))

    await response({"type": "http"}, client.receive, client.send)

    assert client.bodies == [b"data: {}\n\n"] * 5 + [b""]
    assert client.sent[-1]["more_body"] is False
    assert counted_in(metrics, "inference_slow_reader_cancellations_total", model=MODEL) == 0
    assert counted_in(metrics, "inference_requests_total", model=MODEL, endpoint=ENDPOINT, status="200") == 1


async def test_a_client_that_takes_every_event_but_not_the_end_of_the_response_is_cut_off_too() -> None:
    async def two_events() -> AsyncGenerator[bytes, None]:
        yield b"data: 1\n\n"
        yield b"data: 2\n\n"

    metrics, client = Metrics(), Client(reads=2)
    response = EventStream(Feed(two_events()), 0.2, Counted(metrics, MODEL, ENDPOINT, time.perf_counter()))

    await asyncio.wait_for(response({"type": "http"}, client.receive, client.send), timeout=5)

    assert client.bodies == [b"data: 1\n\n", b"data: 2\n\n", b""]
    assert counted_in(metrics, "inference_slow_reader_cancellations_total", model=MODEL) == 1


async def test_a_client_that_hangs_up_has_its_source_closed_at_once_and_is_counted_499() -> None:
    closed, metrics, client = asyncio.Event(), Metrics(), Client()

    async def quiet(closed: asyncio.Event) -> AsyncGenerator[bytes, None]:
        try:
            yield b": subscribed\n\n"
            await asyncio.Event().wait()  # nothing more to say: only the disconnect watch can end this
            yield b"never"
        finally:
            closed.set()

    response = EventStream(Feed(quiet(closed)), None, Counted(metrics, MODEL, ENDPOINT, time.perf_counter()))
    running = asyncio.create_task(response({"type": "http"}, client.receive, client.send))
    while not client.bodies:
        await asyncio.sleep(0)
    client.hung_up.set()

    await asyncio.wait_for(running, timeout=5)

    assert closed.is_set()
    assert counted_in(metrics, "inference_requests_total", model=MODEL, endpoint=ENDPOINT, status="499") == 1
    assert counted_in(metrics, "inference_slow_reader_cancellations_total", model=MODEL) == 0


async def test_a_stream_whose_source_lost_the_hang_ups_cancellation_ends_at_its_next_send() -> None:
    """A source may swallow the one cancellation the disconnect watch sends (Python 3.11's
    ``asyncio.wait_for`` does when its result is ready at that moment); the server's sends
    to a connection that is gone are then no-ops, so only the next send can end the stream."""
    closed, metrics, client = asyncio.Event(), Metrics(), Client()

    async def deaf_to_one_cancellation(closed: asyncio.Event) -> AsyncGenerator[bytes, None]:
        try:
            yield b": subscribed\n\n"
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            while True:
                await asyncio.sleep(0.01)
                yield b": keepalive\n\n"
        finally:
            closed.set()

    source = Feed(deaf_to_one_cancellation(closed))
    response = EventStream(source, None, Counted(metrics, MODEL, ENDPOINT, time.perf_counter()))
    async with serving(response, client) as running:
        while not client.bodies:
            await asyncio.sleep(0)
        client.hung_up.set()

        assert await ends(running, within_s=5)

    assert closed.is_set()
    assert client.bodies == [b": subscribed\n\n"]
    assert counted_in(metrics, "inference_requests_total", model=MODEL, endpoint=ENDPOINT, status="499") == 1


async def test_a_slow_reader_of_a_streamed_orchestration_is_cut_off_and_counted_like_a_proxied_stream() -> None:
    """Real settings, supervisor and dispatcher over models whose GGUF files do not exist: the
    stages fail at once and the stream says so in-band - to a client that reads nothing."""
    svc = _services(TWO, default_model="small", stream_send_timeout_s=0.2)
    plan = _plan(svc, orchestration_mode="critique", stream=True)
    source = OrchestratedStream(svc, plan, {}, 2, None, "chatcmpl-1", 0)
    response = EventStream.for_model(svc, plan.primary, ORCHESTRATED_ENDPOINT, time.perf_counter(), source)
    client = Client(reads=0)

    await asyncio.wait_for(response({"type": "http"}, client.receive, client.send), timeout=5)

    assert counted_in(svc.metrics, "inference_slow_reader_cancellations_total", model=plan.primary) == 1
    labels = {"model": plan.primary, "endpoint": ORCHESTRATED_ENDPOINT, "status": "499"}
    assert counted_in(svc.metrics, "inference_requests_total", **labels) == 1
