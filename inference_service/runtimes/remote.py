"""A model on an OpenAI-compatible server we do not spawn: another host's llama-server,
vLLM, or another inference-service. We only watch its health."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from datetime import datetime, UTC

import httpx

from inference_service.config import ModelConfig
from inference_service.runtimes.base import Endpoint, ProcessInfo, RuntimeStartError


class RemoteRuntime:
    self_healing = True
    local = False
    served_paths = None  # whatever the server serves: forwarded as-is

    def __init__(self, model: ModelConfig, health_interval_s: float, probe_timeout_s: float = 3.0) -> None:
        assert model.url is not None
        self._base_url = model.url.rstrip("/").removesuffix("/v1")
        self._health_url = self._base_url + model.health_path
        self._headers = {"Authorization": f"Bearer {model.api_key.get_secret_value()}"} if model.api_key else {}
        self._model_name = model.model_name_upstream
        self._interval = health_interval_s
        self._timeout = probe_timeout_s
        self._events: deque[str] = deque(maxlen=200)
        self._client: httpx.AsyncClient | None = None

    def _note(self, message: str) -> None:
        self._events.append(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}")

    def _probe_client(self) -> httpx.AsyncClient:
        """One client for every probe: building an httpx client loads the CA bundle, ~50 ms of
        blocked event loop - every health interval, on the router's data path (see bench/)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
        return self._client

    async def _probe(self) -> str | None:
        """None when healthy, else why not."""
        try:
            response = await self._probe_client().get(self._health_url)
        except httpx.HTTPError as error:
            return f"{self._health_url} unreachable: {error.__class__.__name__}: {error}"
        if response.status_code != 200:
            return f"{self._health_url} answered {response.status_code}"
        return None

    async def start(self) -> Endpoint:
        if (problem := await self._probe()) is not None:
            self._note(problem)
            raise RuntimeStartError(problem)
        self._note(f"{self._health_url} healthy")
        return Endpoint(base_url=self._base_url, model_name=self._model_name, headers=self._headers)

    async def wait_until_down(self) -> str:
        while True:
            await asyncio.sleep(self._interval)
            if (problem := await self._probe()) is not None:
                self._note(problem)
                return problem

    async def stop(self) -> None:
        """Only our probe client to release: the server is not ours."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def process_info(self) -> ProcessInfo | None:
        return None

    def log_lines(self) -> Sequence[str]:
        return list(self._events)
