"""A scriptable runtime for driving the supervisor through exact interleavings.

Real llama-server processes prove the behaviour (tests/integration/supervisor); these
fakes only control *when* things happen - a start that hangs until released, a probe
that fails, a crash at a chosen moment - which a real process cannot do on cue.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from inference_service.config import ModelConfig, Settings
from inference_service.runtimes.base import Endpoint, ProcessInfo, RuntimeStartError
from inference_service.supervisor import ModelState, Supervisor

_instances = itertools.count(1)


class FakeRuntime:
    def __init__(self, model_id: str, *, local: bool = True, self_healing: bool = False) -> None:
        self.model_id = model_id
        self.instance = next(_instances)  # in its endpoint's URL: which runtime served a request
        self.local = local
        self.self_healing = self_healing
        self.healthy = True  # start() succeeds
        self.start_error: BaseException | None = None  # raised by start() instead of RuntimeStartError
        self.gate: asyncio.Event | None = None  # when set, start() waits for it
        self.stop_gate: asyncio.Event | None = None  # when set, stop() waits for it
        self.stopping = 0
        self.max_stopping = 0  # stops in progress at the same time: more than one is a race
        self.start_calls: list[float] = []
        self.starting = 0
        self.max_starting = 0
        self.watchers = 0
        self.max_watchers = 0
        self.stops = 0
        self.running = False
        #: Set both to show a process while running (pid, resident MiB), as a llama-server child does.
        self.pid: int | None = None
        self.rss_mb: float | None = None
        self._down: asyncio.Future[str] | None = None

    async def start(self) -> Endpoint:
        self.start_calls.append(time.monotonic())
        self.starting += 1
        self.max_starting = max(self.max_starting, self.starting)
        try:
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0)
            if self.start_error is not None:
                raise self.start_error
            if not self.healthy:
                raise RuntimeStartError(f"{self.model_id}: backend down")
        finally:
            self.starting -= 1
        self.running = True
        self._down = asyncio.get_running_loop().create_future()
        return self.endpoint

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(base_url=f"http://fake/{self.model_id}/{self.instance}", model_name=self.model_id)

    async def wait_until_down(self) -> str:
        assert self._down is not None
        down = self._down
        self.watchers += 1
        self.max_watchers = max(self.max_watchers, self.watchers)
        try:
            return await down
        finally:
            self.watchers -= 1

    def crash(self, reason: str = "exited with code 1") -> None:
        assert self._down is not None
        self.running = False
        self._down.set_result(reason)

    async def stop(self) -> None:
        self.stops += 1
        self.stopping += 1
        self.max_stopping = max(self.max_stopping, self.stopping)
        try:
            if self.stop_gate is not None:
                await self.stop_gate.wait()
        finally:
            self.stopping -= 1
        self.running = False

    def process_info(self) -> ProcessInfo | None:
        if not self.running or self.pid is None:
            return None
        return ProcessInfo(pid=self.pid, port=None, rss_mb=self.rss_mb, cpu_percent=None)

    def log_lines(self) -> Sequence[str]:
        return []


def settings(
    models: Sequence[str], model_options: Mapping[str, Mapping[str, Any]] | None = None, **top_level: Any
) -> Settings:
    """Settings for fake models (described as remote so no GGUF path is needed; the fake decides locality),
    with ``model_options`` (id -> more keys of its table, e.g. ``pinned``)."""
    options = model_options or {}
    return Settings(
        models={
            model_id: {"runtime": "remote", "url": f"http://fake/{model_id}", **options.get(model_id, {})}
            for model_id in models
        },
        **{"runtimes": {"remote": {"health_interval_s": 0.01}}, "failed_retry_s": 0, **top_level},
    )


class Harness:
    """A supervisor over fake runtimes, and the runtimes themselves by model id (the newest one made for it)."""

    def __init__(
        self,
        models: Sequence[str],
        *,
        local: bool = True,
        self_healing: bool = False,
        model_options: Mapping[str, Mapping[str, Any]] | None = None,
        **top_level: Any,
    ) -> None:
        self.settings = settings(models, model_options, **top_level)
        self._kind = {"local": local, "self_healing": self_healing}
        self.runtimes = {m: FakeRuntime(m, local=local, self_healing=self_healing) for m in models}
        self._handed_out: set[str] = set()
        self.supervisor = Supervisor(self.settings, self._runtime)

    def _runtime(self, config: ModelConfig) -> FakeRuntime:
        """The prepared runtime the first time; a new one for each later config (a reload's restart, a new model)."""
        if config.id in self._handed_out or config.id not in self.runtimes:
            self.runtimes[config.id] = FakeRuntime(config.id, **self._kind)
        self._handed_out.add(config.id)
        return self.runtimes[config.id]

    def state(self, model_id: str) -> str:
        return str(self.supervisor.status(model_id).state)


class Replicas:
    """A supervisor over one llamacpp model ``m`` whose replicas run fake runtimes, newest by replica name."""

    def __init__(self, replicas: int, model_keys: dict[str, Any] | None = None, **top_level: Any) -> None:
        model = {"runtime": "llamacpp", "path": "/nonexistent/m.gguf", "replicas": replicas, **(model_keys or {})}
        self.settings = Settings(models={"m": model}, failed_retry_s=0, **top_level)
        self.runtimes: dict[str, FakeRuntime] = {}
        self.supervisor = Supervisor(self.settings, self._runtime)

    def _runtime(self, config: ModelConfig) -> FakeRuntime:
        self.runtimes[config.replica_name] = FakeRuntime(config.replica_name)
        return self.runtimes[config.replica_name]

    def states(self) -> list[ModelState]:
        return [replica.state for replica in self.supervisor.status("m").replicas]

    def config(self, **overrides: Any) -> ModelConfig:
        return self.settings.models["m"].model_copy(update=overrides)


async def settle(rounds: int = 20) -> None:
    """Let every runnable task advance until it blocks again."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def eventually(condition: Any, timeout_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


@contextmanager
def task_errors() -> Iterator[list[dict[str, Any]]]:
    """Collect what the event loop reports about failed tasks nobody awaited ('exception never retrieved')."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
    finally:
        loop.set_exception_handler(previous)
