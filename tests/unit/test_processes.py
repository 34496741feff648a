"""ChildProcess against real (tiny Python) child processes: output capture and termination."""

from __future__ import annotations

import asyncio
import ctypes
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from inference_service.processes import ChildProcess

Spawn = Callable[[str], Awaitable[ChildProcess]]


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start ``python -c CODE`` children; every one is terminated at teardown."""
    children: list[ChildProcess] = []

    async def start(code: str) -> ChildProcess:
        child = ChildProcess([sys.executable, "-c", code], name="test-child", log_lines=50)
        children.append(child)
        await child.spawn()
        return child

    yield start
    for child in children:
        await child.terminate(grace_s=1.0)


async def said_ready(child: ChildProcess, timeout_s: float = 10.0) -> None:
    """Wait until the child has printed its ``ready`` line."""
    deadline = time.monotonic() + timeout_s
    while child.log_lines() != ["ready"]:
        assert time.monotonic() < deadline, f"child never said ready: {child.log_lines()}"
        await asyncio.sleep(0.02)


async def test_overlong_output_line_is_cut_and_later_lines_still_arrive(spawn: Spawn) -> None:
    child = await spawn("print('x' * 200_000); print('after'); print('end')")
    assert await child.wait() == 0
    first, *rest = child.log_lines()
    assert first.endswith(" bytes cut]") and len(first) < 10_000
    assert rest == ["after", "end"]


async def test_child_that_ignores_sigterm_is_killed_after_the_grace_period(spawn: Spawn) -> None:
    child = await spawn(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    )
    await said_ready(child)  # its SIGTERM handler is installed
    started = time.monotonic()
    assert await child.terminate(grace_s=0.5) == -9
    assert 0.5 <= time.monotonic() - started < 5


async def test_terminating_an_exited_child_again_returns_its_exit_code(spawn: Spawn) -> None:
    child = await spawn("raise SystemExit(3)")
    assert await child.wait() == 3
    assert await child.terminate(grace_s=1.0) == 3


async def test_process_info_is_reported_while_running_and_gone_after_exit(spawn: Spawn) -> None:
    child = await spawn("import time; print('ready', flush=True); time.sleep(60)")
    await said_ready(child)  # measured once the interpreter runs, not between fork and exec
    info = child.info(port=1234)
    assert info is not None and (info.pid, info.port) == (child.pid, 1234)
    assert info.rss_mb is not None and info.rss_mb > 1
    await child.terminate(grace_s=1.0)
    assert child.info(port=1234) is None


# What the child itself reads back with prctl(PR_GET_PDEATHSIG): the signal it gets when we die.
_PRINT_DEATH_SIGNAL = (
    "import ctypes; libc = ctypes.CDLL(None); signal = ctypes.c_int(); "
    "libc.prctl(2, ctypes.byref(signal)); print(signal.value, flush=True)"
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_child_gets_the_death_signal_without_loading_libraries_between_fork_and_exec(
    spawn: Spawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prctl`` is resolved in the parent: a dlopen in the forked child of a threaded
    process can deadlock on the loader lock, so any library lookup there fails the spawn."""

    def no_loading_in_the_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("ctypes.CDLL called while spawning")

    monkeypatch.setattr(ctypes, "CDLL", no_loading_in_the_child)
    child = await spawn(_PRINT_DEATH_SIGNAL)  # a fresh interpreter after exec: its ctypes is untouched
    assert await child.wait() == 0
    assert child.log_lines() == ["9"]  # SIGKILL
