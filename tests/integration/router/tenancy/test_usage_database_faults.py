"""A router database that is corrupt or cannot be written: one clear log line, serving goes on, and the
usage and activity records that could not be kept are counted."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.configs import wait_until, write_config
from tests.support.prometheus import sample
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
KEYS = {"ops": {"key": "k-ops", "scopes": ["admin", "read", "inference"]}}
AUTH = {"Authorization": "Bearer k-ops"}
REPLY = {"object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5}}


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host() as recorder:
        recorder.reply = json.dumps(REPLY).encode()
        yield recorder


def corrupt(directory: Path) -> Path:
    path = directory / "usage.db"
    path.write_bytes(b"not a database, whatever its name says" * 200)
    return path


def unwritable(directory: Path) -> Path:
    blocker = directory / "a-file"
    blocker.write_text("a file where the database's directory should be")
    return blocker / "usage.db"


def read_only(directory: Path) -> Path:
    """A database file the router may read, never write: mode 0444 - or, for root, which writes
    through any mode, the immutable attribute (undone after the test)."""
    path = directory / "usage.db"
    with contextlib.closing(sqlite3.connect(path)) as database:
        database.execute("CREATE TABLE made_elsewhere (x)")
    path.chmod(0o444)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    return path


@pytest.fixture(params=[corrupt, unwritable, read_only], ids=["corrupt", "unwritable", "read-only"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path, host: RecordingHost
) -> Iterator[tuple[ServiceProcess, Path]]:
    usage_db = request.param(tmp_path)
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}}
    config = write_config(tmp_path / "config.toml", models, keys=KEYS, usage_db=str(usage_db))
    try:
        with running_service(config, tmp_path / "logs") as service:
            yield service, usage_db
    finally:
        if request.param is read_only and os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(usage_db)], check=True)  # or pytest cannot remove tmp_path


def test_serving_goes_on_the_loss_is_counted_and_logged_once(service: tuple[ServiceProcess, Path]) -> None:
    router, usage_db = service
    body = {"model": REMOTE_ID, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        answer = httpx.post(router.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        assert answer.status_code == 200, answer.text
    lost = lambda: sample(httpx.get(router.url + "/metrics", headers=AUTH).text, "inference_usage_lost_requests_total")  # noqa: E731
    assert wait_until(lambda: lost() == 3, timeout_s=30)  # the next flush drops the three calls and counts them
    lines = [line for line in router.log().splitlines() if "is unusable" in line]
    assert len(lines) == 1 and str(usage_db) in lines[0] and "serving continues" in lines[0]
    usage = httpx.get(router.url + "/v1/usage", headers=AUTH, timeout=30).json()
    assert usage["complete"] is False


def test_the_activity_history_loses_its_records_the_same_way(service: tuple[ServiceProcess, Path]) -> None:
    router, _ = service
    body = {"model": REMOTE_ID, "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(2):
        answer = httpx.post(router.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        assert answer.status_code == 200, answer.text
    history = httpx.get(router.url + "/v1/activity", headers=AUTH, timeout=30)
    assert history.status_code == 200 and history.json()["complete"] is False and history.json()["data"] == []
    metrics = httpx.get(router.url + "/metrics", headers=AUTH).text
    assert sample(metrics, "inference_activity_lost_records_total") == 2
    assert len([line for line in router.log().splitlines() if "is unusable" in line]) == 1
