"""``runtimes.ollama.spawn``: the ``ollama serve`` command line, and the shared child's lifecycle.

No Ollama binary exists here, so the lifecycle tests put a stand-in ``ollama`` executable
in place: a shell script that execs the Ollama test server, which (like Ollama) listens
on ``$OLLAMA_HOST``. The process handling under test - spawn, health check, stop - is real.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from inference_service.runtimes.base import RuntimeStartError
from inference_service.runtimes.ollama import OllamaServer, serve_command
from tests.support.configs import SMOLLM2_FILE
from tests.support.ollama_server import LibraryModel, OllamaTestServer
from tests.support.service import REPO_ROOT, free_port


def fake_ollama(directory: Path, body: str) -> Path:
    """An executable named ``ollama`` running ``body`` (with ``"$@"`` = its arguments)."""
    script = directory / "ollama"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return script


def server(url: str, binary: Path | None) -> OllamaServer:
    return OllamaServer(url, binary, health_timeout_s=30, health_interval_s=0.05, stop_grace_s=5, log_buffer_lines=50)


def test_serve_command_runs_ollama_serve_listening_where_the_url_points() -> None:
    argv, env = serve_command(Path("/usr/bin/ollama"), "http://127.0.0.1:12345")
    assert argv == ["/usr/bin/ollama", "serve"]
    assert env["OLLAMA_HOST"] == "127.0.0.1:12345"


def test_serve_command_defaults_to_ollamas_port_and_keeps_the_environment() -> None:
    _, env = serve_command(Path("ollama"), "http://0.0.0.0")
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert env["PATH"] == os.environ["PATH"]


async def test_acquire_spawns_ollama_serve_and_release_stops_it(tmp_path: Path) -> None:
    binary = fake_ollama(
        tmp_path,
        f'cd {REPO_ROOT} && exec {sys.executable} -m tests.support.ollama_server "$@" '
        f"--model smollm2:135m={SMOLLM2_FILE}",
    )
    url = f"http://127.0.0.1:{free_port()}"
    ollama = server(url, binary)
    await ollama.acquire("a")
    info = ollama.info()
    try:
        assert info is not None and psutil.pid_exists(info.pid)
        async with httpx.AsyncClient() as client:
            tags = (await client.get(f"{url}/api/tags", timeout=5)).json()
        assert tags["models"][0]["name"] == "smollm2:135m"
    finally:
        await ollama.release("a")
    assert ollama.info() is None and not psutil.pid_exists(info.pid)


async def test_the_child_outlives_all_but_its_last_user(tmp_path: Path) -> None:
    binary = fake_ollama(tmp_path, f'cd {REPO_ROOT} && exec {sys.executable} -m tests.support.ollama_server "$@"')
    ollama = server(f"http://127.0.0.1:{free_port()}", binary)
    await ollama.acquire("a")
    await ollama.acquire("b")
    try:
        await ollama.release("a")
        assert ollama.info() is not None
    finally:
        await ollama.release("b")
    assert ollama.info() is None


async def test_acquire_uses_an_ollama_already_listening_instead_of_spawning(tmp_path: Path) -> None:
    refuses = fake_ollama(tmp_path, "exit 1")
    with OllamaTestServer({"smollm2:135m": LibraryModel(SMOLLM2_FILE)}) as running:
        ollama = server(running.url, refuses)
        await ollama.acquire("a")
        assert ollama.info() is None
        await ollama.release("a")


async def test_acquire_reports_a_child_that_exits_while_starting(tmp_path: Path) -> None:
    crashing = fake_ollama(tmp_path, "echo 'Error: listen tcp: address already in use' >&2; exit 1")
    with pytest.raises(RuntimeStartError, match=r"exited with code 1 while starting:\nError: listen tcp"):
        await server(f"http://127.0.0.1:{free_port()}", crashing).acquire("a")


async def test_acquire_without_an_ollama_binary_says_so() -> None:
    with pytest.raises(RuntimeStartError, match="no `ollama` binary on PATH"):
        await server(f"http://127.0.0.1:{free_port()}", None).acquire("a")
