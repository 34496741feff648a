"""The activity history's place in the router's database, against real routers: a usage.db written
before the history existed opens with its usage kept, and a reload that shortens the retention
prunes what is now too old."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference_service.router.tenancy import ledger
from tests.support.configs import wait_until, write_config
from tests.support.service import ServiceProcess, free_port, running_service

pytestmark = pytest.mark.integration

OFFLINE = "offline"
KEYS = {"ops": {"key": "k-ops", "scopes": ["admin", "read", "inference"]}}
AUTH = {"Authorization": "Bearer k-ops"}
MODELS = {OFFLINE: {"runtime": "remote", "url": f"http://127.0.0.1:{free_port()}"}}  # down: fails at once


def failing_request(router: ServiceProcess) -> str:
    body = {"model": OFFLINE, "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(router.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
    assert answer.status_code >= 500, answer.text
    return answer.headers["x-request-id"]


def history(router: ServiceProcess) -> list[dict[str, Any]]:
    answer = httpx.get(router.url + "/v1/activity", headers=AUTH, timeout=30)
    assert answer.status_code == 200 and answer.json()["complete"], answer.text
    return answer.json()["data"]  # type: ignore[no-any-return]


def test_a_usage_db_from_before_the_history_keeps_its_usage_and_gains_the_history(tmp_path: Path) -> None:
    usage_db = tmp_path / "usage.db"
    with contextlib.closing(sqlite3.connect(usage_db)) as old:  # what main's router wrote: its DDL, no versions
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(ledger.SCHEMA)
        old.execute("INSERT INTO usage (key, model, hour, requests) VALUES ('ops', 'offline', 3600, 7)")
        old.commit()
    config = write_config(tmp_path / "config.toml", MODELS, keys=KEYS, usage_db=str(usage_db))
    with running_service(config, tmp_path / "logs") as router:
        request_id = failing_request(router)
        assert [record["request_id"] for record in history(router)] == [request_id]
        usage = httpx.get(router.url + "/v1/usage", params={"until": "7200"}, headers=AUTH, timeout=30).json()
    assert [(row["key"], row["requests"]) for row in usage["data"]] == [("ops", 7)] and usage["complete"]
    assert "is unusable" not in router.log()


def test_a_reload_that_shortens_the_retention_prunes_the_older_records(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", MODELS, keys=KEYS, activity_retention_days=7)
    with running_service(config, tmp_path / "logs") as router:
        for _ in range(2):
            failing_request(router)
        assert len(history(router)) == 2
        write_config(config, MODELS, keys=KEYS, activity_retention_days=0.00001)  # 0.864 s
        reload = httpx.post(router.url + "/admin/reload", headers=AUTH, timeout=60)
        assert reload.status_code == 200 and reload.json()["ok"], reload.text
        assert wait_until(lambda: history(router) == [], timeout_s=30)
