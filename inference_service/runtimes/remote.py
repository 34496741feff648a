"""A model on an OpenAI-compatible server we do not spawn: another host's llama-server,
vLLM, or another inference-service. We only watch its health - through the prober shared
by every model on the same host."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

from inference_service.config import ModelConfig
from inference_service.runtimes.base import Endpoint, ProcessInfo, RuntimeStartError
from inference_service.runtimes.probe import HealthProber


class RemoteRuntime:
    self_healing = True
    local = False
    served_paths: frozenset[str] | None = None  # whatever the server serves: forwarded as-is

    def __init__(self, model: ModelConfig, health_interval_s: float, prober: HealthProber | None = None) -> None:
        assert model.url is not None
        self._base_url = model.url.rstrip("/").removesuffix("/v1")
        self._health_url = self._base_url + model.health_path
        self._headers = {"Authorization": f"Bearer {model.api_key.get_secret_value()}"} if model.api_key else {}
        self._model_name = model.model_name_upstream
        self._prober = prober or HealthProber(health_interval_s)
        self._holding = False
        self._events: deque[str] = deque(maxlen=200)

    def _note(self, message: str) -> None:
        self._events.append(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}")

    async def start(self) -> Endpoint:
        """Healthy when the host's health URL answers 200 (a probe at most one interval old)."""
        if not self._holding:
            self._holding = True
            self._prober.hold()
        if (problem := await self._prober.check(self._health_url, self._headers)) is not None:
            self._note(problem)
            raise RuntimeStartError(problem)
        self._note(f"{self._health_url} healthy")
        return Endpoint(base_url=self._base_url, model_name=self._model_name, headers=self._headers)

    async def wait_until_down(self) -> str:
        problem = await self._prober.wait_until_down(self._health_url, self._headers)
        self._note(problem)
        return problem

    async def stop(self) -> None:
        """Nothing of the server is ours: just stop using the shared prober."""
        if self._holding:
            self._holding = False
            await self._prober.release()

    def process_info(self) -> ProcessInfo | None:
        return None

    def log_lines(self) -> Sequence[str]:
        return list(self._events)
