"""Which llama-server the service runs, and how it would be built when there is none."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from inference_service.config import Settings
from inference_service.provisioning.index import ProvisioningError
from inference_service.provisioning.llamacpp import cmake_configure_args, configured_binary, ensure_binary, install_dir
from inference_service.provisioning.progress import Progress

VERSION = "11434.0.0"


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def settings(binary: Path | None = None, version: str = VERSION) -> Settings:
    return Settings(runtimes={"llamacpp": {"binary": binary, "version": version}})


@pytest.fixture(autouse=True)
def no_outside_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Only what a test puts in place may be found: no LLAMA_SERVER_BIN, an empty PATH."""
    monkeypatch.delenv("LLAMA_SERVER_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def test_llama_server_bin_wins_over_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from_env = executable(tmp_path / "env" / "llama-server")
    monkeypatch.setenv("LLAMA_SERVER_BIN", str(from_env))
    assert configured_binary(settings(binary=executable(tmp_path / "cfg" / "llama-server"))) == from_env


def test_configured_binary_wins_over_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    on_path = executable(tmp_path / "bin" / "llama-server")
    monkeypatch.setenv("PATH", str(on_path.parent))
    from_config = executable(tmp_path / "cfg" / "llama-server")
    assert configured_binary(settings(binary=from_config)) == from_config


def test_binary_on_path_wins_over_the_cached_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    on_path = executable(tmp_path / "bin" / "llama-server")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert configured_binary(settings()) == on_path


def test_cached_build_is_found_without_configuration() -> None:
    cached = install_dir(VERSION, cuda=False) / "bin" / "llama-server"
    if not cached.exists():
        pytest.skip("no cached llama-server build (run `inference-service runtime install`)")
    assert configured_binary(settings()) == cached


def test_nothing_installed_means_no_binary() -> None:
    assert configured_binary(settings(version="0.0.0-never-built")) is None


def test_non_executable_configured_binary_is_an_error(tmp_path: Path) -> None:
    not_executable = tmp_path / "llama-server"
    not_executable.write_text("")
    with pytest.raises(ProvisioningError, match="is not executable"):
        configured_binary(settings(binary=not_executable))


def test_install_uses_a_found_binary_without_building(tmp_path: Path) -> None:
    found = executable(tmp_path / "cfg" / "llama-server")
    log = io.StringIO()
    assert ensure_binary(settings(binary=found), Progress(log)) == found
    assert f"using llama-server at {found}" in log.getvalue()


@pytest.mark.parametrize(("cuda", "flag"), [(False, "-DGGML_CUDA=OFF"), (True, "-DGGML_CUDA=ON")])
def test_cmake_configure_selects_the_backend(cuda: bool, flag: str, tmp_path: Path) -> None:
    argv = cmake_configure_args(tmp_path / "src", tmp_path / "build", cuda=cuda)
    assert argv[:5] == ["cmake", "-S", str(tmp_path / "src"), "-B", str(tmp_path / "build")]
    assert flag in argv


def test_cmake_configure_builds_only_a_static_server(tmp_path: Path) -> None:
    argv = cmake_configure_args(tmp_path / "src", tmp_path / "build", cuda=False)
    expected = {
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
    }
    assert expected <= set(argv)


def test_cpu_and_cuda_builds_are_cached_apart() -> None:
    assert install_dir(VERSION, cuda=False) != install_dir(VERSION, cuda=True)
    assert install_dir(VERSION, cuda=True).name == f"{VERSION}-cuda-noamx"


@pytest.mark.parametrize("cuda", [False, True])
def test_the_build_leaves_amx_out_whatever_the_cpu_advertises(cuda: bool, tmp_path: Path) -> None:
    argv = cmake_configure_args(tmp_path / "src", tmp_path / "build", cuda=cuda)
    for language in ("C", "CXX"):
        flags = next(arg for arg in argv if arg.startswith(f"-DCMAKE_{language}_FLAGS="))
        assert {"-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16"} <= set(flags.split("=", 1)[1].split())


def test_a_binary_built_with_other_flags_is_not_reused() -> None:
    """The cache folder of an AMX build (named ``<version>-cpu`` before) is never the one looked up."""
    assert install_dir(VERSION, cuda=False).name == f"{VERSION}-cpu-noamx"
