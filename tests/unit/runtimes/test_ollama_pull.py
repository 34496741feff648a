"""``models pull`` for an Ollama model: Ollama's NDJSON pull progress, rendered and checked."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from inference_service.config import Settings, load_settings
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.ollama import pull_ollama_model
from inference_service.provisioning.progress import Progress
from tests.support.configs import write_config
from tests.support.ollama_server import OllamaTestServer
from tests.support.service import REPO_ROOT, free_port
from tests.unit.runtimes.conftest import NOT_PULLED


def settings_for(tmp_path: Path, url: str, ollama_model: str = NOT_PULLED) -> Settings:
    config = write_config(
        tmp_path / "config.toml",
        {"gem": {"runtime": "ollama", "ollama_model": ollama_model}},
        runtimes={"ollama": {"url": url}},
    )
    return load_settings(config)


def test_pull_draws_a_progress_bar_and_ends_with_the_model_pulled(tmp_path: Path, ollama: OllamaTestServer) -> None:
    settings = settings_for(tmp_path, ollama.url)
    output = io.StringIO()
    result = pull_ollama_model(settings, settings.models["gem"], Progress(output, log_interval_s=0))
    text = output.getvalue()
    assert result == f"{NOT_PULLED}@{ollama.url}"
    assert "[##############################]" in text and "MiB" in text
    assert text.index("pulling manifest") < text.index("[###") < text.index("success")
    assert NOT_PULLED in ollama.pulled


def test_pull_of_a_model_ollama_cannot_find_raises_its_error(tmp_path: Path, ollama: OllamaTestServer) -> None:
    settings = settings_for(tmp_path, ollama.url, ollama_model="no-such-model")
    with pytest.raises(ProvisioningError, match="no-such-model:latest: pull model manifest: file does not exist"):
        pull_ollama_model(settings, settings.models["gem"], Progress(io.StringIO()))


def test_pull_with_ollama_down_names_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    settings = settings_for(tmp_path, url)
    with pytest.raises(ProvisioningError, match=f"cannot reach Ollama at {url}"):
        pull_ollama_model(settings, settings.models["gem"], Progress(io.StringIO()))


def test_cli_models_pull_of_an_ollama_model_prints_where_it_is(tmp_path: Path, ollama: OllamaTestServer) -> None:
    settings_for(tmp_path, ollama.url)
    result = subprocess.run(
        [sys.executable, "-m", "inference_service", "models", "pull", "gem", "--config", str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert (result.returncode, result.stdout) == (0, f"{NOT_PULLED}@{ollama.url}\n"), result.stderr
