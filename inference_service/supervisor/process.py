"""A child process that can never outlive us.

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
import logging
import os
import signal
import sys
from collections.abc import Sequence

import psutil

from inference_service.runtimes.base import ProcessInfo

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


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
            preexec_fn=_die_with_parent,
            env=self._env,
        )
        with contextlib.suppress(psutil.Error):
            self._psutil = psutil.Process(self._process.pid)
            self._psutil.cpu_percent(None)  # prime: the next call reports usage since now
        self._pump = asyncio.create_task(self._pump_output(), name=f"logs:{self.name}")
        logger.info("spawned %s pid=%d: %s", self.name, self._process.pid, " ".join(self.argv))

    async def _pump_output(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            line = raw.decode(errors="replace").rstrip()
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

    def log_lines(self) -> list[str]:
        return list(self._logs)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(list(self._logs)[-lines:])

    def info(self, port: int | None) -> ProcessInfo | None:
        if self._process is None or self._process.returncode is not None:
            return None
        rss_mb = cpu = None
        if self._psutil is not None:
            with contextlib.suppress(psutil.Error):
                with self._psutil.oneshot():
                    rss_mb = round(self._psutil.memory_info().rss / 2**20, 1)
                    cpu = self._psutil.cpu_percent(None)
        return ProcessInfo(pid=self._process.pid, port=port, rss_mb=rss_mb, cpu_percent=cpu)

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, sig)

    async def terminate(self, grace_s: float) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; return the exit code."""
        if self._process is None:
            return None
        if self._process.returncode is None:
            self._signal_group(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout=grace_s)
            except asyncio.TimeoutError:
                logger.warning("%s pid=%d ignored SIGTERM for %.1fs; sending SIGKILL", self.name, self.pid, grace_s)
                self._signal_group(signal.SIGKILL)
                await self._process.wait()
        # Anything the child forked into its group dies with it.
        self._signal_group(signal.SIGKILL)
        code = await self.wait()
        if self._pump is not None:
            self._pump.cancel()
        logger.info("%s pid=%d stopped (exit %s)", self.name, self._process.pid, code)
        return code
