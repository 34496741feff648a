"""SIGTERM under load: readiness fails at once, late requests get 503 ``shutting_down``,
running requests finish or are answered properly after ``shutdown_grace_s``, and no
llama-server outlives the router."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.router.conftest import StartRouter, chat_body
from tests.support.api import gone, llama_servers
from tests.support.configs import smollm2, wait_until, write_config
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, running_service
from tests.support.sse import DONE, sse_lines
from tests.support.timing import Budget

pytestmark = pytest.mark.integration

MODEL_ID = "smollm2-shutdown"
#: Long generations: 2048 context tokens per slot keep a stream going well past a short grace.
LONG = {"max_tokens": 1500, "ignore_eos": True}
#: The router's own shares, on an idle machine (stretched by load): turning new work away after
#: SIGTERM; answering and exiting once the grace is over (children stopped); a second SIGTERM.
REFUSE_S, CUT_OFF_S, SECOND_SIGNAL_S = 0.5, 5.0, 3.0


@dataclass
class Outcome:
    """What one client got, or the transport error that broke its response."""

    status: int | None = None
    content_type: str = ""
    body: Any = None
    data: list[str] = field(default_factory=list)  # streams: every data payload, in order
    broken: str | None = None

    @property
    def error_code(self) -> str | None:
        payloads = [self.body] if isinstance(self.body, dict) else []
        payloads += [json.loads(payload) for payload in self.data if payload.startswith("{")]
        codes = [p["error"].get("code") for p in payloads if isinstance(p.get("error"), dict)]
        return codes[-1] if codes else None


def stream(url: str, body: dict[str, Any], first_token: threading.Event | None = None) -> Outcome:
    try:
        with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=300) as response:
            outcome = Outcome(response.status_code, response.headers.get("content-type", ""))
            if response.status_code != 200:
                outcome.body = response.read() and response.json()
                return outcome
            for kind, payload in sse_lines(response):
                if kind == "data":
                    outcome.data.append(payload)
                    if first_token is not None and '"content":"' in payload:
                        first_token.set()
            return outcome
    except httpx.HTTPError as error:
        return Outcome(broken=f"{error.__class__.__name__}: {error}")


def post(url: str, body: dict[str, Any]) -> Outcome:
    try:
        response = httpx.post(url + "/v1/chat/completions", json=body, timeout=300)
    except httpx.HTTPError as error:
        return Outcome(broken=f"{error.__class__.__name__}: {error}")
    content_type = response.headers.get("content-type", "")
    body_ = response.json() if content_type.startswith("application/json") else response.text
    return Outcome(response.status_code, content_type, body_)


def assert_answered_properly(outcomes: list[Outcome]) -> None:
    """No truncated stream, no text/plain 500: every client can tell what happened."""
    for outcome in outcomes:
        assert outcome.broken is None, outcome.broken
        assert outcome.content_type.startswith(("application/json", "text/event-stream")), outcome
        if outcome.content_type.startswith("text/event-stream"):
            assert outcome.data[-1] == DONE and outcome.data.count(DONE) == 1, outcome.data[-3:]
        else:
            assert outcome.status in (200, 503), outcome
            if outcome.status == 503:
                assert outcome.error_code == "shutting_down", outcome


@dataclass
class Load:
    """Two streams holding both slots, and more requests queued behind them."""

    service: ServiceProcess
    children: list[int]
    streams: list[Future[Outcome]]
    queued: list[Future[Outcome]]

    def outcomes(self, timeout_s: float) -> list[Outcome]:
        return [future.result(timeout=timeout_s) for future in self.streams + self.queued]


def start_load(pool: ThreadPoolExecutor, service: ServiceProcess, **request: Any) -> Load:
    """Two streams that have begun, then three requests more; returns once the router has all five."""
    children = [child.pid for child in llama_servers(service)]
    assert children
    body = chat_body(model=MODEL_ID, **request)
    started = [threading.Event(), threading.Event()]
    streams = [pool.submit(stream, service.url, body, event) for event in started]
    for event in started:
        assert event.wait(180), "the streams never produced a token"
    behind = [
        pool.submit(post, service.url, body),
        pool.submit(post, service.url, body),
        pool.submit(stream, service.url, body),
    ]

    def all_arrived() -> bool:  # each request is either waiting, being served, or answered
        metrics = httpx.get(service.url + "/metrics").text
        waiting = sample(metrics, "inference_queue_depth", model=MODEL_ID) or 0
        served = sample(metrics, "inference_in_flight", model=MODEL_ID) or 0
        return waiting + served + sum(future.done() for future in streams + behind) == 5

    wait_until(all_arrived, 60)
    return Load(service, children, streams, behind)


def assert_stopped_without_orphans(load: Load, timeout_s: float) -> None:
    load.service.process.wait(timeout=timeout_s)
    wait_until(lambda: all(gone(pid) for pid in load.children), timeout_s=5.0)


SHUTDOWN_MODEL = smollm2(preload=True, parallel=2, ctx_size=4096)


@pytest.fixture
def start(start_router: StartRouter) -> Callable[[float], ServiceProcess]:
    def start_with_grace(grace_s: float) -> ServiceProcess:
        return start_router({MODEL_ID: SHUTDOWN_MODEL}, wait_ready=True, shutdown_grace_s=grace_s)

    return start_with_grace


def test_sigterm_refuses_new_work_at_once_and_cuts_running_requests_off_cleanly_after_the_grace(
    start: Callable[[float], ServiceProcess],
) -> None:
    grace_s = 3.0
    service = start(grace_s)
    # The router's own work, stretched by the load before the timed part: refusing, then cutting off.
    refuses_within, ends_within = Budget(fixed_s=0, cpu_s=REFUSE_S), Budget(fixed_s=grace_s, cpu_s=CUT_OFF_S)
    with ThreadPoolExecutor(8) as pool:
        load = start_load(pool, service, **LONG)
        service.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()

        ready = wait_until(
            lambda: (r := httpx.get(service.url + "/health/ready")).status_code == 503 and r, refuses_within.seconds
        )
        assert ready.json()["error"]["code"] == "shutting_down"
        late = post(service.url, chat_body(model=MODEL_ID))
        assert (late.status, late.error_code) == (503, "shutting_down"), late
        assert httpx.get(service.url + "/health").status_code == 200  # alive while draining
        assert not any(future.done() for future in load.streams)  # running requests keep running

        outcomes = load.outcomes(timeout_s=grace_s + 30)
        ended = time.monotonic() - signalled
    assert_answered_properly(outcomes)
    streams = outcomes[:2]
    assert all(o.error_code == "shutting_down" and len(o.data) > 3 for o in streams), [o.data[-3:] for o in streams]
    assert all(o.status == 503 for o in outcomes[2:]), outcomes[2:]  # never admitted: no partial answer
    assert grace_s <= ended < ends_within.seconds, (ended, str(ends_within))
    assert_stopped_without_orphans(load, timeout_s=30)


def test_requests_that_finish_within_the_grace_are_served_in_full(start: Callable[[float], ServiceProcess]) -> None:
    # Short answers and a grace far beyond them, so that an oversubscribed machine (llama-server's
    # threads spin-wait: under contention a token can take seconds) still finishes within it.
    service = start(300.0)
    exits_within = Budget(fixed_s=0, cpu_s=CUT_OFF_S)
    with ThreadPoolExecutor(8) as pool:
        load = start_load(pool, service, max_tokens=12, ignore_eos=True)
        service.process.send_signal(signal.SIGTERM)
        outcomes = load.outcomes(timeout_s=300)
        last_answer = time.monotonic()
    assert_answered_properly(outcomes)
    assert [o.status for o in outcomes] == [200] * 5
    assert all(o.error_code is None for o in outcomes), outcomes
    assert_stopped_without_orphans(load, timeout_s=60)
    stopped_after_s = time.monotonic() - last_answer
    assert stopped_after_s < exits_within.seconds, (
        f"exited {stopped_after_s:.1f}s after the last answer, not once idle ({exits_within})"
    )


def test_a_second_sigterm_skips_the_grace(start: Callable[[float], ServiceProcess]) -> None:
    service = start(60.0)
    cut_off_within = Budget(fixed_s=0, cpu_s=SECOND_SIGNAL_S)
    with ThreadPoolExecutor(8) as pool:
        load = start_load(pool, service, **LONG)
        service.process.send_signal(signal.SIGTERM)
        wait_until(lambda: httpx.get(service.url + "/health/ready").status_code == 503, timeout_s=30)  # draining
        assert not any(future.done() for future in load.streams)  # still streaming
        service.process.send_signal(signal.SIGTERM)
        second = time.monotonic()
        outcomes = load.outcomes(timeout_s=30)
        assert time.monotonic() - second < cut_off_within.seconds, str(cut_off_within)
    assert_answered_properly(outcomes)
    assert all(o.error_code == "shutting_down" for o in outcomes), outcomes
    assert_stopped_without_orphans(load, timeout_s=30)


@pytest.fixture
def reloadable(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    """A router started with a grace far beyond any cut-off budget, and its config file (to reload)."""
    config = write_config(tmp_path / "config.toml", {MODEL_ID: SHUTDOWN_MODEL}, shutdown_grace_s=120)
    with running_service(config, tmp_path / "logs", wait_ready=True) as service:
        yield service, config


def test_a_reloaded_grace_is_the_one_the_next_stop_drains_for(reloadable: tuple[ServiceProcess, Path]) -> None:
    service, config = reloadable
    grace_s = 1.0
    write_config(config, {MODEL_ID: SHUTDOWN_MODEL}, shutdown_grace_s=grace_s)
    answer = httpx.post(service.url + "/admin/reload", timeout=60).json()
    assert (answer["ok"], answer["restart_required"]) == (True, []), answer
    ends_within = Budget(fixed_s=grace_s, cpu_s=CUT_OFF_S)
    first_token = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream, service.url, chat_body(model=MODEL_ID, **LONG), first_token)
        assert first_token.wait(180), "the stream never produced a token"
        service.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        outcome = running.result(timeout=300)
        ended = time.monotonic() - signalled
    # Cut off after the reloaded 1 s, not left to run for the 120 s the router started with.
    assert outcome.error_code == "shutting_down", outcome.data[-3:]
    assert ended < ends_within.seconds, (ended, str(ends_within))


def follow(url: str, opened: threading.Event) -> bytes:
    """Read an endless feed (events, a followed log) to its end: everything it sent."""
    received = b""
    with httpx.stream("GET", url, timeout=httpx.Timeout(30, read=120)) as response:
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
            opened.set()
    return received


def test_open_feeds_do_not_hold_the_shutdown_for_its_grace(start: Callable[[float], ServiceProcess]) -> None:
    """An open dashboard (the event stream, a followed log) has nothing to finish: SIGTERM ends
    its feeds at once, with a closing comment (no OpenAI error event, no [DONE]), and exits."""
    service = start(60.0)
    exits_within = Budget(fixed_s=0, cpu_s=CUT_OFF_S)  # far below the 60 s grace
    feeds = [
        f"{service.url}/v1/events",
        f"{service.url}/v1/logs?follow=true",
        f"{service.url}/v1/models/{MODEL_ID}/logs?follow=true",
    ]
    opened = [threading.Event() for _ in feeds]
    with ThreadPoolExecutor(len(feeds)) as pool:
        received = [pool.submit(follow, url, event) for url, event in zip(feeds, opened, strict=True)]
        assert all(event.wait(30) for event in opened)
        service.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        service.process.wait(timeout=exits_within.seconds + 30)
        exited = time.monotonic() - signalled
        bodies = [future.result(timeout=30) for future in received]
    assert exited < exits_within.seconds, f"exited {exited:.1f}s after SIGTERM with only feeds open ({exits_within})"
    for body in bodies:
        assert body.endswith(b": the server is shutting down\n\n") and b"[DONE]" not in body, body[-200:]


#: A stream cut off by the shutdown ends in its API's own framing: (path, body, the expected last event).
API_STREAMS = {
    "anthropic_messages": (
        "/v1/messages",
        {"messages": [{"role": "user", "content": "Count to one thousand."}], "max_tokens": 1500},
        "event: error",
    ),
    "openai_responses": (
        "/v1/responses",
        {"input": "Count to one thousand.", "max_output_tokens": 1500},
        "event: error",
    ),
}


def read_raw_stream(url: str, body: dict[str, Any], first_event: threading.Event) -> str:
    with httpx.stream("POST", url, json=body, timeout=300) as response:
        assert response.status_code == 200, response.read()
        received = ""
        for chunk in response.iter_text():
            received += chunk
            if "\n\n" in received:
                first_event.set()
    return received


@pytest.mark.parametrize("api", API_STREAMS.values(), ids=API_STREAMS.keys())
def test_a_stream_cut_off_by_the_shutdown_ends_in_its_own_apis_framing(
    start: Callable[[float], ServiceProcess], api: tuple[str, dict[str, Any], str]
) -> None:
    """Not OpenAI's `data: {"error"...}` and `[DONE]`, which an Anthropic or Responses client cannot parse."""
    path, fields, last_event = api
    # No grace: the cut comes within milliseconds of SIGTERM. (/v1/messages does not pass
    # ignore_eos on, and a 22-token answer ended inside a 0.5 s grace on an idle machine.)
    service = start(0.0)
    body = {"model": MODEL_ID, "ignore_eos": True, "stream": True, **fields}
    first_event = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        received = pool.submit(read_raw_stream, service.url + path, body, first_event)
        assert first_event.wait(60)
        service.process.send_signal(signal.SIGTERM)
        raw = received.result(timeout=60)
    events = [event for event in raw.split("\n\n") if event.strip()]
    assert events[-1].startswith(last_event + "\ndata: "), events[-3:]
    assert "shut down" in events[-1] and "[DONE]" not in raw
    service.process.wait(timeout=30)
