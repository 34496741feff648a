"""A model served by an Ollama server.

Loading and unloading go through Ollama's native API (``docs/api.md``): ``GET /api/version``
is the health check, ``GET /api/tags`` says whether the model is pulled, ``POST
/api/generate`` with no prompt loads it (with the model's ``keep_alive``) and the same
with ``"keep_alive": 0`` unloads it; ``GET /api/ps`` confirms what is resident. Chat and
completions go through Ollama's OpenAI-compatible ``/v1`` endpoints, so the router's
proxy and SSE path are exactly the ones llama-server traffic takes.

Ollama is usually a daemon the router does not own, so the runtime is *self-healing*:
while the server is unreachable the model is ``failed`` and probed. With
``runtimes.ollama.spawn = true`` the router starts one ``ollama serve`` child, shared by
every Ollama model, and stops it when the last of them is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from inference_service.config import ModelConfig
from inference_service.processes import ChildProcess, ChildStartError, ProcessInfo
from inference_service.runtimes.base import OPENAI_PATHS, Endpoint, RuntimeStartError
from inference_service.runtimes.probe import HealthProber

DEFAULT_PORT = 11434


class OllamaAPIError(Exception):
    """Ollama answered with an error status; ``message`` is its ``{"error": ...}`` text."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def canonical_name(name: str) -> str:
    """Ollama's own spelling of a model name: the tag defaults to ``latest``."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def keep_alive_value(raw: str | None) -> str | int | None:
    """``keep_alive`` as Ollama parses it: a bare number means seconds, else a Go duration ("10m", "-1")."""
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def error_message(response: httpx.Response) -> str:
    """The text of an Ollama error body: ``{"error": "..."}`` natively, OpenAI-shaped under ``/v1``."""
    try:
        payload: Any = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def serve_command(binary: Path, url: str) -> tuple[list[str], dict[str, str]]:
    """The ``ollama serve`` command line and environment for a server listening where ``url`` points.

    Ollama takes its listen address only from ``OLLAMA_HOST``, so the configured
    ``runtimes.ollama.url`` is translated into it.
    """
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or DEFAULT_PORT
    return [str(binary), "serve"], {**os.environ, "OLLAMA_HOST": f"{host}:{port}"}


class OllamaClient:
    """The native API calls the router makes; every failure is an httpx.HTTPError or OllamaAPIError.

    They go through the prober's shared HTTP client: building a client per call cost ~30 ms of
    blocked event loop each (the CA bundle), every health interval, per model."""

    def __init__(self, base_url: str, timeout_s: float, prober: HealthProber) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._prober = prober

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout_s: float | None = None
    ) -> Any:
        response = await self._prober.client.request(
            method, self.base_url + path, json=body, timeout=timeout_s or self._timeout_s
        )
        if response.status_code != 200:
            raise OllamaAPIError(response.status_code, error_message(response))
        return response.json()

    async def version(self) -> str:
        return str((await self._request("GET", "/api/version"))["version"])

    async def pulled(self) -> set[str]:
        """Names of the models present on the server (``/api/tags``)."""
        return {canonical_name(m["name"]) for m in (await self._request("GET", "/api/tags"))["models"]}

    async def running(self) -> set[str]:
        """Names of the models resident in memory (``/api/ps``)."""
        return {canonical_name(m["name"]) for m in (await self._request("GET", "/api/ps"))["models"]}

    async def load(self, name: str, keep_alive: str | int | None, timeout_s: float) -> dict[str, Any]:
        body: dict[str, Any] = {"model": name, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return dict(await self._request("POST", "/api/generate", body, timeout_s))

    async def unload(self, name: str) -> dict[str, Any]:
        return dict(await self._request("POST", "/api/generate", {"model": name, "keep_alive": 0, "stream": False}))


class OllamaServer:
    """The ``ollama serve`` child shared by every Ollama model when ``runtimes.ollama.spawn`` is on.

    Started by the first model that needs it (unless an Ollama already answers at the
    URL, which is then used as is), stopped when the last model releases it.
    """

    def __init__(
        self,
        url: str,
        binary: Path | None,
        health_timeout_s: float,
        health_interval_s: float,
        stop_grace_s: float,
        log_buffer_lines: int,
        prober: HealthProber | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._binary = binary
        self._health_timeout_s = health_timeout_s
        self._health_interval_s = health_interval_s
        self._stop_grace_s = stop_grace_s
        self._log_buffer_lines = log_buffer_lines
        self._client = OllamaClient(url, timeout_s=2.0, prober=prober or HealthProber(health_interval_s))
        self._users: set[str] = set()
        self._child: ChildProcess | None = None
        self._lock = asyncio.Lock()

    @property
    def port(self) -> int:
        return urlsplit(self._url).port or DEFAULT_PORT

    async def _healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError, OllamaAPIError, KeyError, ValueError):
            await self._client.version()
            return True
        return False

    async def acquire(self, user: str) -> None:
        """Make sure an Ollama serves at the URL, spawning ``ollama serve`` if nothing does."""
        async with self._lock:
            self._users.add(user)
            if self._child is not None and self._child.returncode is None:
                return
            if await self._healthy():
                return
            if self._binary is None:
                raise RuntimeStartError("runtimes.ollama.spawn is true but there is no `ollama` binary on PATH")
            argv, env = serve_command(self._binary, self._url)
            self._child = ChildProcess(argv, name="ollama-serve", log_lines=self._log_buffer_lines, env=env)
            try:
                await self._child.spawn()
            except OSError as error:
                raise RuntimeStartError(f"cannot start {self._binary}: {error}") from None
            try:
                await self._child.wait_ready(self._healthy, self._health_interval_s, self._health_timeout_s)
            except ChildStartError as error:
                await self._child.terminate(self._stop_grace_s)
                raise RuntimeStartError(error.reason) from None

    async def release(self, user: str) -> None:
        """Forget ``user``; stop the child once nobody needs it."""
        async with self._lock:
            self._users.discard(user)
            if not self._users and self._child is not None:
                await self._child.terminate(self._stop_grace_s)
                self._child = None

    def info(self) -> ProcessInfo | None:
        return self._child.info(self.port) if self._child else None

    def log_lines(self) -> list[str]:
        return self._child.log_lines() if self._child else []


class OllamaRuntime:
    """One model on an Ollama server (spawned by us or not)."""

    #: Ollama is a daemon: while it is down the model is ``failed`` and probed, not restarted here.
    self_healing = True
    #: Ollama schedules and evicts its own models (OLLAMA_MAX_LOADED_MODELS), so they do not
    #: count against this router's max_loaded_models / memory_budget_mb.
    local = False
    #: Ollama's OpenAI layer (/v1: chat, completions, embeddings, responses) and its Anthropic
    #: Messages layer; no token counting, rerank, tokenize or infill (docs.ollama.com/api).
    served_paths: frozenset[str] | None = OPENAI_PATHS | {"/v1/responses", "/v1/messages"}

    def __init__(
        self,
        model: ModelConfig,
        url: str,
        health_interval_s: float,
        load_timeout_s: float,
        server: OllamaServer | None = None,
        probe_timeout_s: float = 3.0,
        prober: HealthProber | None = None,
    ) -> None:
        self._model = model
        self._name = canonical_name(model.model_name_upstream)
        self._keep_alive = keep_alive_value(model.keep_alive)
        self._prober = prober or HealthProber(health_interval_s, probe_timeout_s)
        self._holding = False
        self._client = OllamaClient(url, timeout_s=probe_timeout_s, prober=self._prober)
        self._load_timeout_s = load_timeout_s
        self._server = server
        self._loaded = False
        self._events: deque[str] = deque(maxlen=200)

    def _note(self, message: str) -> None:
        self._events.append(f"{datetime.now(UTC).isoformat(timespec='seconds')} {message}")

    def _fail(self, message: str) -> RuntimeStartError:
        self._note(message)
        return RuntimeStartError(message)

    async def start(self) -> Endpoint:
        url = self._client.base_url
        if not self._holding:
            self._holding = True
            self._prober.hold()
        if self._server is not None:
            await self._server.acquire(self._model.id)
        try:
            version = await self._client.version()
            if self._name not in await self._client.pulled():
                raise self._fail(
                    f"model {self._name!r} is not pulled on the Ollama at {url}: "
                    f"run `inference-service models pull {self._model.id}`"
                )
            await self._client.load(self._name, self._keep_alive, self._load_timeout_s)
            self._loaded = True
            if self._name not in await self._client.running():
                raise self._fail(f"Ollama at {url} answered the load of {self._name!r} but does not list it in /api/ps")
        except OllamaAPIError as error:
            raise self._fail(f"Ollama at {url} refused to load {self._name!r}: {error}") from None
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as error:
            raise self._fail(f"Ollama at {url} unreachable: {error.__class__.__name__}: {error}") from None
        self._note(f"loaded {self._name} on Ollama {version} at {url} (keep_alive={self._keep_alive})")
        return Endpoint(base_url=url, model_name=self._name)

    async def wait_until_down(self) -> str:
        """Probe ``/api/version`` (once per interval for all the models on this Ollama). A model
        Ollama evicts by itself is not "down": Ollama reloads it on demand."""
        problem = await self._prober.wait_until_down(self._client.base_url + "/api/version")
        reason = f"Ollama at {self._client.base_url} stopped answering: {problem}"
        self._note(reason)
        return reason

    async def stop(self) -> None:
        """Unload from Ollama (``keep_alive: 0``) if we loaded it; an unreachable server holds nothing."""
        if self._loaded:
            self._loaded = False
            try:
                await self._client.unload(self._name)
                self._note(f"unloaded {self._name}")
            except (httpx.HTTPError, OllamaAPIError) as error:
                self._note(f"unload of {self._name} failed: {error.__class__.__name__}: {error}")
        if self._server is not None:
            await self._server.release(self._model.id)
        if self._holding:
            self._holding = False
            await self._prober.release()

    def process_info(self) -> ProcessInfo | None:
        return self._server.info() if self._server else None

    def log_lines(self) -> Sequence[str]:
        return [*self._events, *(self._server.log_lines() if self._server else [])]
