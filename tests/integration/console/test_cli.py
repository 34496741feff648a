"""The client commands against a running service: ps, models list/load, logs, events, and the API key."""

from __future__ import annotations

import json
import select
import subprocess
import time
from collections.abc import Sequence

import httpx
import pytest

from inference_service.cli.client import LOAD_EVENT_GRACE_S
from tests.integration.console.conftest import API_KEY, OFFLINE_ID, PAIR_ID
from tests.support.cli import CLI, run_cli
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.service import REPO_ROOT, ServiceProcess
from tests.support.timing import interleaved
from tests.support.wiretap import wiretap

pytestmark = pytest.mark.integration


def remote(service: ServiceProcess, *argv: str) -> list[str]:
    return [*argv, "--url", service.url, "--api-key", API_KEY]


def first_lines(argv: Sequence[str], count: int, timeout_s: float = 30.0) -> list[str]:
    """Start a following command, read ``count`` lines of its output, then stop it."""
    process = subprocess.Popen([*CLI, *argv], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert process.stdout is not None
        return [process.stdout.readline().rstrip("\n") for _ in range(count)]
    finally:
        process.kill()
        process.wait(timeout_s)


def test_ps_prints_a_table_of_every_model(console_router: ServiceProcess) -> None:
    result = run_cli(*remote(console_router, "ps"))
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["MODEL", "RUNTIME", "STATUS", "PID", "RSS", "CPU", "IN-FLIGHT", "UNTIL"]
    by_model = {row.split()[0]: row.split() for row in rows}
    assert set(by_model) == {SMOLLM2_ID, GEMMA_ID, OFFLINE_ID, PAIR_ID}
    smol = by_model[SMOLLM2_ID]
    assert smol[1:3] == ["llamacpp", "loaded"] and smol[3].isdigit() and smol[-1] == "forever"


def test_ps_json_is_the_model_cards(console_router: ServiceProcess) -> None:
    result = run_cli(*remote(console_router, "ps", "--json"))
    cards = json.loads(result.stdout)
    assert {card["id"] for card in cards} == {SMOLLM2_ID, GEMMA_ID, OFFLINE_ID, PAIR_ID}
    assert all({"status", "pid", "rss_mb", "in_flight", "expires_at"} <= card.keys() for card in cards)


def test_models_list_json(console_router: ServiceProcess) -> None:
    result = run_cli(*remote(console_router, "models", "list", "--json"))
    assert result.returncode == 0, result.stderr
    assert SMOLLM2_ID in {card["id"] for card in json.loads(result.stdout)}


def test_api_key_from_the_environment(console_router: ServiceProcess) -> None:
    result = run_cli("ps", "--url", console_router.url, env={"INFERENCE_API_KEY": API_KEY})
    assert result.returncode == 0, result.stderr


def test_missing_api_key_is_one_error_line_and_exit_2(console_router: ServiceProcess) -> None:
    result = run_cli("ps", "--url", console_router.url)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "inference-service: error: GET /v1/models: HTTP 401"
    )


def unload(service: ServiceProcess, model_id: str) -> None:
    response = httpx.post(
        f"{service.url}/v1/models/{model_id}/unload", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60
    )
    assert response.status_code == 200, response.text


def test_models_load_shows_progress_from_the_event_stream(console_router: ServiceProcess) -> None:
    unload(console_router, GEMMA_ID)
    result = run_cli(*remote(console_router, "models", "load", GEMMA_ID))
    assert result.returncode == 0, result.stderr
    assert f"{GEMMA_ID}: loading" in result.stderr and f"{GEMMA_ID}: loaded" in result.stderr, result.stderr
    assert result.stdout.split()[:2] == [GEMMA_ID, "loaded"]


def test_models_load_prints_the_loaded_line_though_the_event_stream_lags(console_router: ServiceProcess) -> None:
    """The load's answer can overtake its own ``loaded`` event: the command waits for the event before exiting."""
    unload(console_router, GEMMA_ID)

    def lag_event_stream(sent: bytes) -> float:
        return 0.5 if sent.startswith(b"GET /v1/events") else 0.0

    with wiretap(lambda: int(console_router.url.rsplit(":", 1)[1]), reply_delay=lag_event_stream) as tap:
        result = run_cli("models", "load", GEMMA_ID, "--url", f"http://127.0.0.1:{tap.port}", "--api-key", API_KEY)
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith(f"{GEMMA_ID}: loaded"), result.stderr


def timed_cli(*argv: str) -> float:
    """Seconds one successful command takes, start-up included."""
    started = time.monotonic()
    result = run_cli(*argv)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - started


def test_models_load_of_a_loaded_model_does_not_wait_for_events(console_router: ServiceProcess) -> None:
    """No load happens, so no ``loaded`` event comes: the command must not sit out its grace period
    for one. Compared with a plain ``models list`` in turns, as start-up time varies on a busy machine."""
    run_cli(*remote(console_router, "models", "load", GEMMA_ID))

    def load_again() -> float:
        started = time.monotonic()
        result = run_cli(*remote(console_router, "models", "load", GEMMA_ID))
        assert result.stdout.split()[:2] == [GEMMA_ID, "loaded"], result.stderr
        return time.monotonic() - started

    comparison = interleaved(lambda: timed_cli(*remote(console_router, "models", "list")), load_again)
    assert comparison.added_s < LOAD_EVENT_GRACE_S / 2, f"`models load` vs `models list`: {comparison}"


def test_logs_prints_a_models_log_tail(console_router: ServiceProcess) -> None:
    result = run_cli(*remote(console_router, "logs", "smol", "--tail", "3"))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3


def test_logs_follow_prints_the_router_log(console_router: ServiceProcess) -> None:
    lines = first_lines(remote(console_router, "logs", "-f", "--tail", "2"), count=2)
    assert all(" INFO " in line or " WARNING " in line for line in lines), lines


def test_events_prints_one_json_object_per_event(console_router: ServiceProcess) -> None:
    process = subprocess.Popen(
        [*CLI, *remote(console_router, "events", "--types", "request")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        body = {"model": OFFLINE_ID, "messages": [{"role": "user", "content": "hi"}]}
        # the subscription opens asynchronously: send requests until one is printed
        for _ in range(50):
            httpx.post(
                f"{console_router.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=30,
            )
            if select.select([process.stdout], [], [], 0.2)[0]:
                break
        event = json.loads(process.stdout.readline())
    finally:
        process.kill()
        process.wait(30)
    assert event["type"] == "request" and event["model"] == OFFLINE_ID and event["status"] == 503


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("inference-service ")
