"""Config reload: validated first, applied as a diff, and never at the cost of an in-flight request."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, wait_until, write_config
from tests.support.events import listening
from tests.support.service import ServiceProcess, free_port, running_service
from tests.support.sse import sse_lines

pytestmark = pytest.mark.integration

COPY_ID = "smollm2-copy"


def offline() -> dict[str, Any]:
    return {"runtime": "remote", "url": f"http://127.0.0.1:{free_port()}"}


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[ServiceProcess, Path]]:
    # A drain longer than any stream here even on a crowded machine: the reload must wait for it, not cut it.
    config = write_config(
        tmp_path / "config.toml",
        {SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma(preload=True)},
        drain_timeout_s=600,
    )
    with running_service(config, tmp_path / "logs", wait_ready=True) as service:
        wait_until(lambda: _card(service, GEMMA_ID)["status"] == "loaded", timeout_s=30)
        yield service, config


def _card(service: ServiceProcess, model_id: str) -> dict[str, Any]:
    return httpx.get(f"{service.url}/v1/models/{model_id}", timeout=30).json()


def _ids(service: ServiceProcess) -> set[str]:
    return {card["id"] for card in httpx.get(f"{service.url}/v1/models", timeout=30).json()["data"]}


def _reload(service: ServiceProcess) -> httpx.Response:
    return httpx.post(f"{service.url}/admin/reload", timeout=600)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


#: Long enough to outlast opening the event listener on a busy machine; fits a slot (512 ctx / 2).
STORY_TOKENS = 160


def test_stream_in_flight_survives_a_reload_that_adds_removes_and_restarts(
    started: tuple[ServiceProcess, Path],
) -> None:
    service, config = started
    old_a, old_b = _card(service, SMOLLM2_ID)["pid"], _card(service, GEMMA_ID)["pid"]
    first_chunk, finished = threading.Event(), threading.Event()
    received: list[str] = []
    body = {
        "model": SMOLLM2_ID,
        "messages": [{"role": "user", "content": "Tell a long story."}],
        "max_tokens": STORY_TOKENS,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    def stream() -> None:
        with httpx.stream("POST", f"{service.url}/v1/chat/completions", json=body, timeout=600) as response:
            for kind, payload in sse_lines(response):
                if kind == "data":
                    received.append(payload)
                    first_chunk.set()
        finished.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert first_chunk.wait(30), "the stream did not start"
    write_config(config, {SMOLLM2_ID: smollm2(preload=True, ctx_size=1024), COPY_ID: smollm2()}, drain_timeout_s=600)
    with listening(f"{service.url}/v1/events?types=config_reload") as events:
        assert not finished.is_set(), "the stream ended before the reload: the test proves nothing"
        response = _reload(service)
        reader.join(timeout=600)
        event = events.wait_for(lambda e: e["type"] == "config_reload", timeout_s=10)

    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["added"], result["removed"], result["restarted"], result["ok"]) == (
        [COPY_ID],
        [GEMMA_ID],
        [SMOLLM2_ID],
        True,
    )
    assert event["ok"] and event["added"] == [COPY_ID]
    # The stream ran to its end: every token, then [DONE], no error event.
    assert received[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in received[:-1]]
    assert not [chunk for chunk in chunks if "error" in chunk]
    assert chunks[-1]["usage"]["completion_tokens"] == STORY_TOKENS
    # The diff was applied: C known and unloaded, B gone with its process, A restarted with the new ctx_size.
    assert _ids(service) == {SMOLLM2_ID, COPY_ID}
    assert httpx.get(f"{service.url}/v1/models/{GEMMA_ID}").status_code == 404
    assert not _alive(old_b)
    card = _card(service, SMOLLM2_ID)
    assert card["status"] == "loaded" and card["pid"] != old_a
    argv = psutil.Process(card["pid"]).cmdline()
    assert argv[argv.index("--ctx-size") + 1] == "1024"
    assert _card(service, COPY_ID)["status"] == "unloaded"


def test_invalid_config_is_rejected_with_the_reason_and_the_old_one_stays(started: tuple[ServiceProcess, Path]) -> None:
    service, config = started
    pid = _card(service, SMOLLM2_ID)["pid"]
    good = config.read_text()
    config.write_text(good + '\n[models.broken]\nruntime = "bogus"\n')
    with listening(f"{service.url}/v1/events?types=config_reload") as events:
        response = _reload(service)
        event = events.wait_for(lambda e: e["type"] == "config_reload", timeout_s=10)
    assert response.status_code == 400
    assert "models.broken.runtime" in response.json()["error"]["message"]
    assert event["ok"] is False and "models.broken.runtime" in event["reason"]
    assert _ids(service) == {SMOLLM2_ID, GEMMA_ID} and _card(service, SMOLLM2_ID)["pid"] == pid
    chat = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{service.url}/v1/chat/completions", json=chat, timeout=60).status_code == 200


@pytest.mark.parametrize("spoil", ["not_utf8", "a_directory"])
def test_an_unreadable_config_file_is_rejected_and_the_old_one_stays(
    started: tuple[ServiceProcess, Path], tmp_path: Path, spoil: str
) -> None:
    service, config = started
    good = config.read_text()
    pid = _card(service, SMOLLM2_ID)["pid"]
    moved = tmp_path / "moved.toml"
    if spoil == "not_utf8":
        config.write_bytes(good.encode() + b"\n# caf\xe9\n")
    else:  # the path now names a directory
        config.rename(moved)
        config.mkdir()
    try:
        with listening(f"{service.url}/v1/events?types=config_reload") as events:
            response = _reload(service)
            event = events.wait_for(lambda e: e["type"] == "config_reload", timeout_s=10)
    finally:
        if spoil == "a_directory":
            config.rmdir()
            moved.rename(config)
        config.write_text(good)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "config_invalid"
    assert str(config) in response.json()["error"]["message"]
    assert event["ok"] is False and str(config) in event["reason"]
    assert _ids(service) == {SMOLLM2_ID, GEMMA_ID} and _card(service, SMOLLM2_ID)["pid"] == pid


@pytest.mark.parametrize("change", ["restarted", "preloaded"])
def test_a_model_file_that_is_not_there_is_rejected_and_the_running_model_stays(
    started: tuple[ServiceProcess, Path], tmp_path: Path, change: str
) -> None:
    """A restart from a missing file would stop a working model for nothing; a new preloaded model
    without its file is refused as at start-up. Nothing of the file is applied."""
    service, config = started
    good = config.read_text()
    pid = _card(service, SMOLLM2_ID)["pid"]
    absent = tmp_path / "absent.gguf"
    models = {SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma(preload=True)}
    if change == "restarted":
        models[SMOLLM2_ID] = smollm2(preload=True, path=str(absent))
    else:
        models["newcomer"] = smollm2(preload=True, path=str(absent))
    write_config(config, models, queue_size=5)
    try:
        response = _reload(service)
    finally:
        config.write_text(good)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "config_invalid" and str(absent) in response.json()["error"]["message"]
    assert _ids(service) == {SMOLLM2_ID, GEMMA_ID}
    assert _card(service, SMOLLM2_ID)["status"] == "loaded" and _card(service, SMOLLM2_ID)["pid"] == pid
    chat = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{service.url}/v1/chat/completions", json=chat, timeout=60).status_code == 200


def test_sighup_with_an_unreadable_config_publishes_the_failure(started: tuple[ServiceProcess, Path]) -> None:
    service, config = started
    good = config.read_text()
    config.write_bytes(good.encode() + b"\n# caf\xe9\n")
    try:
        with listening(f"{service.url}/v1/events?types=config_reload") as events:
            os.kill(service.pid, signal.SIGHUP)  # the router we started, by pid
            event = events.wait_for(lambda e: e["type"] == "config_reload", timeout_s=10)
    finally:
        config.write_text(good)
    assert event["ok"] is False and "not UTF-8" in event["reason"]
    assert "Task exception was never retrieved" not in service.log()


def test_top_level_and_startup_keys(started: tuple[ServiceProcess, Path]) -> None:
    """Limits apply at once and touch no model; start-up-only keys are reported, not half-applied."""
    service, config = started
    pids = {model_id: _card(service, model_id)["pid"] for model_id in (SMOLLM2_ID, GEMMA_ID)}
    write_config(
        config,
        {SMOLLM2_ID: smollm2(preload=True, ttl_s=600), GEMMA_ID: gemma(preload=True)},
        queue_size=3,
        log_level="debug",
    )
    result = _reload(service).json()
    assert (result["updated"], result["restarted"], result["restart_required"]) == ([SMOLLM2_ID], [], ["log_level"])
    assert {model_id: _card(service, model_id)["pid"] for model_id in pids} == pids
    assert _card(service, SMOLLM2_ID)["ttl_s"] == 600


def test_sighup_reloads(started: tuple[ServiceProcess, Path]) -> None:
    service, config = started
    write_config(config, {SMOLLM2_ID: smollm2(preload=True), GEMMA_ID: gemma(preload=True), "by-signal": offline()})
    os.kill(service.pid, signal.SIGHUP)  # the router we started, by pid
    wait_until(lambda: "by-signal" in _ids(service), timeout_s=10)


def test_watch_config_reloads_when_the_file_changes(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", {"first": offline()})
    with running_service(config, tmp_path / "logs", extra_args=["--watch-config"]) as service:
        write_config(config, {"first": offline(), "second": offline()})
        wait_until(lambda: _ids(service) == {"first", "second"}, timeout_s=15)  # polled every 2 s
        write_config(config, {"second": offline()})
        wait_until(lambda: _ids(service) == {"second"}, timeout_s=15)
