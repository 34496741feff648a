"""The Ollama runtime against a REAL Ollama: opt-in, collected only when ``OLLAMA_URL`` is set.

``OLLAMA_URL=http://127.0.0.1:11434 pytest tests/integration/runtimes/test_real_ollama.py``
pulls ``$OLLAMA_MODEL`` (default ``smollm2:135m``, ~270 MB) through ``inference-service
models pull`` if needed, then drives a router in front of that Ollama. It skips only when
OLLAMA_URL is set but nothing answers there; without OLLAMA_URL it is not collected at
all (see conftest.py), so CI never reports it as a skipped test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api import chat, unload
from tests.support.configs import write_config
from tests.support.service import REPO_ROOT, ServiceProcess, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

OLLAMA_URL = os.environ.get("OLLAMA_URL", "").rstrip("/")
OLLAMA_MODEL = os.environ.get("OLLAMA_MODEL", "smollm2:135m")
MODEL_ID = "real-ollama"


@pytest.fixture(scope="module")
def real_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    try:
        httpx.get(f"{OLLAMA_URL}/api/version", timeout=5).raise_for_status()
    except httpx.HTTPError as error:
        pytest.skip(f"OLLAMA_URL={OLLAMA_URL} is set but unreachable: {error}")
    directory: Path = tmp_path_factory.mktemp("real-ollama")
    config = write_config(
        directory / "config.toml",
        {MODEL_ID: {"runtime": "ollama", "ollama_model": OLLAMA_MODEL}},
        runtimes={"ollama": {"url": OLLAMA_URL}},
    )
    pull = [sys.executable, "-m", "inference_service", "models", "pull", MODEL_ID, "--config", str(config)]
    subprocess.run(pull, check=True, timeout=800, cwd=REPO_ROOT)
    with running_service(config, directory) as service:
        yield service


def test_real_ollama_answers_a_chat_through_the_router(real_router: ServiceProcess) -> None:
    response = chat(real_router, MODEL_ID, max_tokens=4)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1


def test_real_ollama_streams_through_the_router(real_router: ServiceProcess) -> None:
    body = {"model": MODEL_ID, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{real_router.url}/v1/chat/completions", json=body, timeout=120) as response:
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert len(events) >= 2 and events[-1] == "data: [DONE]"


def test_real_ollama_unload_removes_the_model_from_ps(real_router: ServiceProcess) -> None:
    assert chat(real_router, MODEL_ID).status_code == 200
    assert unload(real_router, MODEL_ID).json()["status"] == "unloaded"
    running = [m["name"] for m in httpx.get(f"{OLLAMA_URL}/api/ps", timeout=10).json()["models"]]
    assert OLLAMA_MODEL not in running and f"{OLLAMA_MODEL}:latest" not in running
