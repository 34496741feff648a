"""The processes a benchmark needs - router, instant upstream, a hand-spawned llama-server - and
the per-process numbers it reads from them (CPU time, RSS). Everything started here is
stopped here, by pid."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from inference_service.config import ModelConfig, load_settings
from inference_service.provisioning.llamacpp import configured_binary
from inference_service.runtimes.llamacpp import build_argv
from tests.support.service import REPO_ROOT, ServiceProcess, free_port, running_service, stop_tree, wait_for_http

LLM_ID = "bench-llm"
INSTANT_ID = "instant"
DRIP_ID = "drip"
# The tiny real model the benchmark drives (~100 tok/s on a laptop CPU, loads in under a second).
SOURCE_MODEL = "smollm2-135m-instruct"


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


@dataclass(frozen=True)
class LlamaSetup:
    """What both the router and a hand-spawned llama-server need to serve the same model."""

    binary: Path
    model: ModelConfig
    model_path: Path


def llama_setup(parallel: int) -> LlamaSetup:
    """The repo's default small model, with ``parallel`` slots so concurrent streams decode together."""
    settings = load_settings()
    binary = configured_binary(settings)
    if binary is None:
        raise SystemExit("bench: no llama-server binary: run `make setup` (or `inference-service runtime install`)")
    source = settings.models[SOURCE_MODEL]
    model_path = settings.model_path(source)
    if not model_path.is_file():
        raise SystemExit(f"bench: {model_path} missing: run `inference-service models pull {SOURCE_MODEL}`")
    model = source.model_copy(update={"id": LLM_ID, "aliases": [], "parallel": parallel, "ttl_s": None})
    return LlamaSetup(binary=binary, model=model, model_path=model_path)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(
    path: Path,
    models: dict[str, dict[str, object]],
    queue_size: int,
    binary: Path | None = None,
    top_level: dict[str, object] | None = None,
) -> Path:
    """A router config holding just the benchmark's models; nothing else loads or competes.

    ``top_level``: more top-level settings (capacity limits, connection cap)."""
    lines = [
        f"default_model = {_toml_value(next(iter(models)))}",
        f"queue_size = {queue_size}",
        f"usage_db = {_toml_value(path.with_suffix('.usage.db'))}",  # the bench's own, not the developer's ledger
    ]
    lines += [f"{key} = {_toml_value(value)}" for key, value in (top_level or {}).items()]
    if binary is not None:  # the very binary the direct measurements spawn
        lines += ["[runtimes.llamacpp]", f"binary = {_toml_value(binary)}"]
    for model_id, fields in models.items():
        lines.append(f"\n[models.{model_id}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def llm_router_config(path: Path, setup: LlamaSetup, queue_size: int) -> Path:
    model = setup.model
    fields: dict[str, object] = {
        "runtime": "llamacpp",
        "path": str(setup.model_path),
        "ctx_size": model.ctx_size,
        "parallel": model.parallel,
        "preload": True,
    }
    if model.n_gpu_layers is not None:
        fields["n_gpu_layers"] = model.n_gpu_layers
    # cold_start compares the router's load with a bare spawn: slots restored after the start would be work
    # the bare spawn does not do (the continuity scenario measures that on its own).
    top_level: dict[str, object] = {"kv_cache_disk_mb": 0}
    return write_config(path, {LLM_ID: fields}, queue_size, setup.binary, top_level)


def instant_router_config(path: Path, upstream_url: str, parallel: int, queue_size: int) -> Path:
    fields: dict[str, object] = {"runtime": "remote", "url": upstream_url, "parallel": parallel, "preload": True}
    return write_config(path, {INSTANT_ID: fields}, queue_size)


def max_parallel() -> int:
    """The highest ``parallel`` a model may be configured with (the scale scenario asks for it)."""
    for constraint in ModelConfig.model_fields["parallel"].metadata:
        if (limit := getattr(constraint, "le", None)) is not None:
            return int(limit)
    return 1_000_000


def drip_router_config(path: Path, upstream_url: str, parallel: int, queue_size: int, connections: int) -> Path:
    """``connections``: the router's ``max_connections`` - room for every concurrent stream (the default is 512)."""
    fields: dict[str, object] = {"runtime": "remote", "url": upstream_url, "parallel": parallel, "preload": True}
    return write_config(path, {DRIP_ID: fields}, queue_size, top_level={"max_connections": connections})


def many_models_config(
    path: Path, host_urls: list[str], remote_models: int, llamacpp_models: int, binary: Path
) -> Path:
    """``remote_models`` remote models spread round-robin over the hosts, then ``llamacpp_models``
    llamacpp models that are configured but never loaded (their GGUF need not exist)."""
    models: dict[str, dict[str, object]] = {
        f"remote-{number:03d}": {"runtime": "remote", "url": host_urls[number % len(host_urls)], "preload": True}
        for number in range(remote_models)
    }
    for number in range(llamacpp_models):
        models[f"local-{number:03d}"] = {"runtime": "llamacpp", "path": str(path.parent / f"local-{number:03d}.gguf")}
    return write_config(path, models, queue_size=64, binary=binary)


@contextlib.contextmanager
def router(config: Path, log_dir: Path, env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    """``inference-service serve`` (one uvicorn worker) on a free port, with its model loaded; ``env``
    adds to its environment (tracing's ``OTEL_*``)."""
    with running_service(config, log_dir, env=env, wait_ready=True) as service:
        yield service


@contextlib.contextmanager
def _uvicorn_app(app: str, log_dir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A raw ASGI ``app`` (``module:attribute``) under uvicorn (uvloop + httptools, one worker), on a
    free port until the block exits; yields (base URL, pid) once ``/health`` answers."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with (log_dir / f"{app.partition(':')[0].rpartition('.')[2]}-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", 30, process)
        yield url, process.pid
    finally:
        stop_tree(process, 10.0)


def instant_upstream(log_dir: Path) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """``bench.upstream``: answers at once. The same process is the drip upstream: a request
    with ``drip_ms`` gets its chunks that far apart."""
    return _uvicorn_app("bench.upstream:app", log_dir)


def bare_relay(upstream_url: str, log_dir: Path) -> contextlib.AbstractContextManager[tuple[str, int]]:
    """``bench.bare_relay`` (the floor) in front of ``upstream_url``."""
    return _uvicorn_app("bench.bare_relay:app", log_dir, {"BARE_RELAY_UPSTREAM": upstream_url})


def spawn_llama_until_healthy(setup: LlamaSetup, poll_interval_s: float, timeout_s: float = 120.0) -> float:
    """Cold-start llama-server by hand with the router's own command line; seconds until /health is 200.

    The process is stopped again before returning.
    """
    port = free_port()
    argv = build_argv(setup.binary, setup.model, setup.model_path, port)
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=2.0) as client:
            while time.perf_counter() - started < timeout_s:
                if process.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {process.returncode}: {' '.join(argv)}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        return time.perf_counter() - started
                time.sleep(poll_interval_s)
        raise TimeoutError(f"llama-server not healthy after {timeout_s:g}s")
    finally:
        stop_tree(process, 10.0)
