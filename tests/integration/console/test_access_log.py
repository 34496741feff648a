"""One access line per request at ``info``; ``log_format = "json"`` makes every line a JSON object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.configs import wait_until, write_config
from tests.support.service import ServiceProcess, free_port, running_service

pytestmark = pytest.mark.integration

OFFLINE_ID = "offline"


@pytest.fixture(scope="module")
def json_router(tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    """A router with no local model (nothing to wait for) logging JSON."""
    directory = tmp_path_factory.mktemp("access-log")
    models = {OFFLINE_ID: {"runtime": "remote", "url": f"http://127.0.0.1:{free_port()}"}}
    config = write_config(directory / "config.toml", models, log_format="json", api_key="k")
    with running_service(config, directory / "logs") as service:
        yield service


def _entries(service: ServiceProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]


def _access(service: ServiceProcess, request_id: str) -> dict[str, Any] | None:
    return next(
        (e for e in _entries(service) if e["logger"] == "inference_service.access" and e["request_id"] == request_id),
        None,
    )


def test_every_log_line_is_a_json_object(json_router: ServiceProcess) -> None:
    lines = [line for line in json_router.log().splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines), lines[:5]


def test_inference_request_has_an_access_line_with_model_status_and_duration(json_router: ServiceProcess) -> None:
    body = {"model": OFFLINE_ID, "messages": [{"role": "user", "content": "hi"}]}
    response = httpx.post(json_router.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
    assert response.status_code == 503
    entry = wait_until(lambda: _access(json_router, response.headers["x-request-id"]), timeout_s=5)
    assert entry["level"] == "info" and entry["status"] == 503 and entry["model"] == OFFLINE_ID
    assert entry["endpoint"] == "chat/completions" and entry["duration_ms"] > 0
    assert entry["message"].startswith("POST /v1/chat/completions 503")


def test_refused_request_is_logged_too(json_router: ServiceProcess) -> None:
    response = httpx.get(json_router.url + "/v1/models", headers={"X-Request-ID": "no-key-here"})
    assert response.status_code == 401
    entry = wait_until(lambda: _access(json_router, "no-key-here"), timeout_s=5)
    assert entry["status"] == 401 and entry["path"] == "/v1/models"


def test_log_format_must_be_text_or_json(tmp_path: Path) -> None:
    from inference_service.config import ConfigError, load_settings

    config = write_config(tmp_path / "bad.toml", {}, log_format="xml")
    with pytest.raises(ConfigError, match="log_format"):
        load_settings(config)
