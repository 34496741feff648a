"""``runtimes.ollama.spawn = true`` end to end: the router starts ``ollama serve`` itself.

The ``ollama`` on PATH is a stand-in (no Ollama binary can be installed here): a script
that execs the Ollama test server, listening on ``$OLLAMA_HOST`` as Ollama does. What is
under test is real: the router finding ``ollama`` on PATH, spawning and health-checking
it as its child, and stopping it when no Ollama model needs it any more.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.api import gone, load, model_card, unload
from tests.support.configs import SMOLLM2_FILE, wait_until, write_config
from tests.support.service import REPO_ROOT, ServiceProcess, free_port, running_service

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

MODEL_ID = "spawned-ollama-smollm2"


@pytest.fixture
def spawning_router(tmp_path: Path) -> Iterator[ServiceProcess]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ollama"
    fake.write_text(
        f'#!/bin/sh\ncd {REPO_ROOT} && exec {sys.executable} -m tests.support.ollama_server "$@" '
        f"--model smollm2:135m={SMOLLM2_FILE}\n"
    )
    fake.chmod(0o755)
    config = write_config(
        tmp_path / "config.toml",
        {MODEL_ID: {"runtime": "ollama", "ollama_model": "smollm2:135m"}},
        runtimes={"ollama": {"url": f"http://127.0.0.1:{free_port()}", "spawn": True}},
    )
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with running_service(config, tmp_path / "logs", env=env) as service:
        yield service


def test_router_spawns_ollama_serve_on_load_and_stops_it_on_the_last_unload(spawning_router: ServiceProcess) -> None:
    card = load(spawning_router, MODEL_ID).json()
    assert card["status"] == "loaded" and card["pid"] in {child.pid for child in spawning_router.children()}
    assert "serve" in psutil.Process(card["pid"]).cmdline()
    assert unload(spawning_router, MODEL_ID).json()["pid"] is None
    wait_until(lambda: gone(card["pid"]), timeout_s=10)
    assert model_card(spawning_router, MODEL_ID)["status"] == "unloaded"
