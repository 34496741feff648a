"""The Dockerfile, checked statically (no container engine can pull base images here): its build
runs the same commands as ``make setup``, and its runtime stage matches what the service expects."""

from __future__ import annotations

import re

from inference_service.config import Settings
from tests.support.deploy import dockerfile_stages, exec_form, route_paths
from tests.support.service import REPO_ROOT

STAGES = {stage.name: stage for stage in dockerfile_stages()}
BUILD, RUNTIME = STAGES["build"], STAGES["runtime"]


def makefile_recipe(target: str) -> tuple[list[str], list[str]]:
    """A Makefile target's prerequisites and recipe lines."""
    lines = (REPO_ROOT / "Makefile").read_text().splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"{target}:"))
    prerequisites = lines[start].split(":", 1)[1].split()
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return prerequisites, recipe


def test_is_multi_stage_with_a_slim_runtime() -> None:
    assert list(STAGES) == ["build", "runtime"]
    assert RUNTIME.base == "${RUNTIME_IMAGE}"
    assert RUNTIME.all("COPY")[0].startswith("--from=build ")
    # The toolchain stays behind: the runtime stage installs no compiler.
    assert not any(tool in run for run in RUNTIME.all("RUN") for tool in ("cmake", "g++", "build-essential", "make "))


def test_build_stage_runs_the_make_setup_commands() -> None:
    """`make setup` = build-deps + `inference-service runtime install`; the image builds the same way."""
    prerequisites, recipe = makefile_recipe("setup")
    assert "build-deps" in prerequisites
    assert "$(BIN)/inference-service runtime install" in recipe
    runs = BUILD.all("RUN")
    assert "make build-deps" in runs
    assert any(re.search(r"inference-service runtime install\b", run) for run in runs)


def test_cuda_build_arg_selects_the_cuda_build() -> None:
    assert "CUDA=0" in BUILD.all("ARG")
    (install,) = [run for run in BUILD.all("RUN") if "runtime install" in run]
    assert '[ "$CUDA" = "1" ] && echo --cuda' in install


def test_runs_as_a_non_root_user_under_tini() -> None:
    user = RUNTIME.last("USER")
    assert user not in ("root", "0")
    assert re.search(rf"useradd --system --uid (\d+) .*\b{user}\b", " ".join(RUNTIME.all("RUN"))), (
        f"user {user} is never created"
    )
    entrypoint = exec_form(RUNTIME.last("ENTRYPOINT"))
    assert entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[2] == "inference-service"
    assert any("tini" in run.split() for run in RUNTIME.all("RUN")), "tini is not installed"


def test_serves_on_all_interfaces_by_default() -> None:
    assert exec_form(RUNTIME.last("CMD")) == ["serve", "--host", "0.0.0.0"]


def test_config_comes_from_a_mounted_file_and_the_environment() -> None:
    env = RUNTIME.env()
    assert env["INFERENCE_CONFIG"] == "/etc/inference-service/config.toml"
    assert any(copy.endswith(" /etc/inference-service/config.toml") for copy in RUNTIME.all("COPY")), (
        "no default config"
    )


def test_models_live_in_a_volume_the_service_reads() -> None:
    env = RUNTIME.env()
    assert exec_form(RUNTIME.last("VOLUME")) == [env["INFERENCE_MODELS_DIR"]]


def test_exposed_port_is_the_services_port() -> None:
    env = RUNTIME.env()
    assert RUNTIME.last("EXPOSE") == env["INFERENCE_PORT"] == str(Settings.model_fields["port"].default)


def test_healthcheck_probes_the_health_route_on_the_services_port() -> None:
    healthcheck = RUNTIME.last("HEALTHCHECK")
    assert " CMD " in healthcheck
    (path,) = re.findall(r"http://127\.0\.0\.1:%s(/[\w/]*)", healthcheck)
    assert path == "/health" and path in route_paths()
    assert "os.environ.get('INFERENCE_PORT', '8085')" in healthcheck


def test_dockerignore_keeps_everything_the_build_copies() -> None:
    """.dockerignore excludes all but an allow-list: every COPY source must be on it."""
    allowed = {
        line.removeprefix("!").rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for stage in (BUILD, RUNTIME):
        for copy in stage.all("COPY"):
            words = [word for word in copy.split() if not word.startswith("--")]
            if copy.startswith("--from="):
                continue
            for source in words[:-1]:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"


def test_llama_server_lands_on_the_runtime_path() -> None:
    """The service finds llama-server on PATH (no LLAMA_SERVER_BIN needed in the image)."""
    (install,) = [run for run in BUILD.all("RUN") if "runtime install" in run]
    (target,) = re.findall(r"install -m 0755 \"\$built\" (\S+)", install)
    directory = target.rsplit("/", 1)[0]
    assert target.endswith("/llama-server")
    assert directory in RUNTIME.env()["PATH"].split(":")
    assert any(
        copy.split()[1:] == [directory.rsplit("/bin", 1)[0]] * 2
        for copy in RUNTIME.all("COPY")
        if copy.startswith("--from=build")
    )
