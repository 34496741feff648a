"""Cancelling a running stream from the operator's tools - ``inference-service cancel ID`` and the
dashboard's Cancel button - on a keyed service: its client gets the error event and ``[DONE]``,
and llama-server's slot is idle again within a second."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.integration.console.conftest import API_KEY, AUTH, chat_body
from tests.integration.router.serving.test_cancel import ROUTER_RELEASE_S, SLOTS_POLL_S, TIMED_TOKENS
from tests.support.cli import run_cli
from tests.support.configs import SMOLLM2_ID, wait_until
from tests.support.service import ServiceProcess
from tests.support.sse import longest_gap
from tests.support.timing import Budget, measured

pytestmark = pytest.mark.integration

#: Within two of the dashboard's refreshes (every 5 s) and a slow answer.
REFRESHED_MS = 15_000


def busy_slots(api: httpx.Client) -> int:
    """SmolLM2's llama-server slots processing, from its ``/slots`` (a GET pass-through skips the queue)."""
    return sum(slot["is_processing"] for slot in api.get(f"/upstream/{SMOLLM2_ID}/slots").json())


@dataclass
class Cancelled:
    """The rest of a cancelled stream's body, and how long its slot took to be free."""

    rest: list[str]
    freed_s: float  # from the cancel to llama-server's slot idle
    release: Budget


@dataclass
class RunningStream:
    request_id: str
    finish: Callable[[], Cancelled]  # call right after cancelling: waits for its end and its slot's release


@contextmanager
def running_stream(console_router: ServiceProcess, api: httpx.Client) -> Iterator[RunningStream]:
    """A long stream, generating."""
    request_id = f"cancel-console-{uuid.uuid4().hex}"
    wait_until(lambda: busy_slots(api) == 0, timeout_s=60)
    body = chat_body(max_tokens=1000, ignore_eos=True, stream=True)
    headers = {**AUTH, "X-Request-ID": request_id}
    with httpx.stream(
        "POST", console_router.url + "/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as answer:
        lines = answer.iter_lines()
        assert next(lines).startswith("data: {")  # generating
        release = measured(ROUTER_RELEASE_S, longest_gap(lines, TIMED_TOKENS) + SLOTS_POLL_S)

        def finish() -> Cancelled:
            cancelled = time.monotonic()
            wait_until(lambda: busy_slots(api) == 0, timeout_s=60, interval_s=SLOTS_POLL_S)
            freed_s = time.monotonic() - cancelled
            return Cancelled([line for line in lines if line], freed_s, release)

        yield RunningStream(request_id, finish)


def assert_cancelled_stream(cancelled: Cancelled) -> None:
    assert cancelled.rest[-1] == "data: [DONE]"
    assert json.loads(cancelled.rest[-2].removeprefix("data: "))["error"]["code"] == "request_cancelled"
    assert cancelled.freed_s < cancelled.release.seconds, (
        f"the slot was freed {cancelled.freed_s:.2f}s after the cancel ({cancelled.release})"
    )


def test_the_cli_cancels_a_running_stream(console_router: ServiceProcess, api: httpx.Client) -> None:
    """The slot is timed from the command's exit (its start-up is the interpreter's, not the router's)."""
    with running_stream(console_router, api) as stream:
        result = run_cli("cancel", stream.request_id, "--url", console_router.url, "--api-key", API_KEY)
        cancelled = stream.finish()

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"cancelled {stream.request_id}\n"
    assert_cancelled_stream(cancelled)


def test_the_cli_names_a_request_that_is_not_in_flight_in_one_error_line_and_exits_2(
    console_router: ServiceProcess,
) -> None:
    result = run_cli("cancel", "no-such-request", "--url", console_router.url, "--api-key", API_KEY)

    assert result.returncode == 2
    assert result.stderr == (
        "inference-service: error: POST /v1/requests/no-such-request/cancel: HTTP 404: "
        "no inference request 'no-such-request' in flight: unknown, or already finished\n"
    )


def test_the_dashboards_cancel_button_cancels_a_running_stream(
    dashboard: Page, console_router: ServiceProcess, api: httpx.Client
) -> None:
    with running_stream(console_router, api) as stream:
        row = dashboard.locator(f'#in-flight tr[data-request="{stream.request_id}"]')
        expect(row).to_contain_text(SMOLLM2_ID, timeout=REFRESHED_MS)

        row.locator('[data-action="cancel"]').click()
        cancelled = stream.finish()

    assert_cancelled_stream(cancelled)
    expect(row).to_have_count(0, timeout=REFRESHED_MS)
