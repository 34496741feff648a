"""Process mechanics shared by every runtime that spawns one: a child that can never outlive us.

Each child runs in its own process group (so a stop reaches anything it forks), gets
``PR_SET_PDEATHSIG`` on Linux (so the kernel kills it if we are SIGKILLed), and has its
merged stdout/stderr kept in a bounded ring buffer for ``/v1/models/{id}/logs`` and for
failure reasons.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import psutil

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_READ_CHUNK = 1 << 16
_MAX_LINE_BYTES = 8192  # per kept log line: the ring buffer stays small whatever the child prints


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    port: int | None
    rss_mb: float | None
    cpu_percent: float | None


class ChildStartError(Exception):
    """The child exited or stayed unhealthy while starting; ``reason`` (with its output) is for operators."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _resolve_prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up here in the parent, once.

    The lookup (``dlopen``/``dlsym``) must never run between fork and exec: in a
    multi-threaded parent another thread may hold the loader's lock at fork time, and
    the child would wait for it forever. Only the call itself happens in the child.
    """
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


_PRCTL = _resolve_prctl()


def _die_with_parent(prctl: Callable[..., int] | None, parent_pid: int) -> None:  # in the child, between fork and exec
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl: nobody would signal us
            os.kill(os.getpid(), signal.SIGKILL)


class ChildProcess:
    """Owns one spawned process: its output buffer, its exit, and its termination."""

    def __init__(self, argv: Sequence[str], name: str, log_lines: int = 500, env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.name = name
        self._env = env
        self._logs: collections.deque[str] = collections.deque(maxlen=log_lines)
        self._process: asyncio.subprocess.Process | None = None
        self._psutil: psutil.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def spawn(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, _PRCTL, os.getpid()),
            env=self._env,
        )
        with contextlib.suppress(psutil.Error):
            self._psutil = psutil.Process(self._process.pid)
            self._psutil.cpu_percent(None)  # prime: the next call reports usage since now
        self._pump = asyncio.create_task(self._pump_output(), name=f"logs:{self.name}")
        logger.info("spawned %s pid=%d: %s", self.name, self._process.pid, " ".join(self.argv))

    async def _pump_output(self) -> None:
        """Drain the child's output into the ring buffer for as long as it writes.

        Reads chunks rather than ``readline``: a line over the stream's 64 KiB limit (a
        verbose llama-server logging a long prompt) would make ``readline`` raise, and a
        child whose pipe nobody drains blocks on its next write - a hung model.
        """
        assert self._process is not None and self._process.stdout is not None
        pending, dropped = b"", 0  # the unfinished last line; how much of it was already cut
        while chunk := await self._process.stdout.read(_READ_CHUNK):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                self._keep(raw, dropped)
                dropped = 0
            if len(pending) > _MAX_LINE_BYTES:  # no newline in sight: hold on to the start only
                dropped += len(pending) - _MAX_LINE_BYTES
                pending = pending[:_MAX_LINE_BYTES]
        if pending:
            self._keep(pending, dropped)

    def _keep(self, raw: bytes, dropped: int) -> None:
        dropped += max(0, len(raw) - _MAX_LINE_BYTES)
        line = raw[:_MAX_LINE_BYTES].decode(errors="replace").rstrip()
        if dropped:
            line += f" ... [{dropped} bytes cut]"
        self._logs.append(line)
        logger.debug("[%s] %s", self.name, line)

    async def wait(self) -> int:
        """Wait for exit and for the last output to be captured; return the exit code."""
        assert self._process is not None
        code = await self._process.wait()
        if self._pump is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump), timeout=1.0)
        return code

    async def wait_ready(self, healthy: Callable[[], Awaitable[bool]], interval_s: float, timeout_s: float) -> None:
        """Poll ``healthy`` until it holds, racing the process's exit.

        A child that dies while starting fails the wait at once, with its exit code and
        output, instead of after ``timeout_s``. On timeout the child is left running: the
        caller decides whether to stop it.
        """

        async def poll() -> None:
            while not await healthy():
                await asyncio.sleep(interval_s)

        exited = asyncio.create_task(self.wait())
        ready = asyncio.create_task(poll())
        try:
            done, _ = await asyncio.wait({exited, ready}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (exited, ready):
                if not task.done():
                    task.cancel()
        if ready in done:
            return
        if exited in done:
            raise ChildStartError(f"{self.name} exited with code {exited.result()} while starting:\n{self.log_tail()}")
        raise ChildStartError(f"{self.name} did not become healthy within {timeout_s:g}s:\n{self.log_tail()}")

    def log_lines(self) -> list[str]:
        return list(self._logs)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(list(self._logs)[-lines:])

    def info(self, port: int | None) -> ProcessInfo | None:
        if self._process is None or self._process.returncode is not None:
            return None
        rss_mb = cpu = None
        if self._psutil is not None:
            with contextlib.suppress(psutil.Error), self._psutil.oneshot():
                rss_mb = round(self._psutil.memory_info().rss / 2**20, 1)
                cpu = self._psutil.cpu_percent(None)
        return ProcessInfo(pid=self._process.pid, port=port, rss_mb=rss_mb, cpu_percent=cpu)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    async def terminate(self, grace_s: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; return the exit code.

        Signals go out only while the child still runs: once it has been reaped its pid
        (and so its group id) may belong to an unrelated process, which a late
        ``killpg`` would hit - restarts and shutdown call this again for exited children.
        """
        if self._process is None:
            return None
        if self._process.returncode is not None:
            return await self.wait()
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), timeout=grace_s)
        except TimeoutError:
            logger.warning("%s pid=%d ignored SIGTERM for %.1fs; sending SIGKILL", self.name, self.pid, grace_s)
            self._signal_group(signal.SIGKILL)
            await self._process.wait()
        # Anything the child forked into its group dies with it (moments after the reap: Linux hands out
        # pids in sequence, so the id cannot have been reused yet).
        self._signal_group(signal.SIGKILL)
        code = await self.wait()
        if self._pump is not None:
            self._pump.cancel()
        logger.info("%s pid=%d stopped (exit %s)", self.name, self._process.pid, code)
        return code
