"""An Ollama API test server: the stand-in for the one thing that cannot run here, the ``ollama`` binary.

Written from Ollama's documented API (``docs/api.md``) and its OpenAI-compatibility layer
(``openai/openai.go``, ``middleware/openai.go``). What is real and what is the double:

* REAL: generation. ``/v1/chat/completions`` is forwarded to a real ``llama-server``
  running a real tiny model; tokens, timing and SSE chunking come from it. The double
  only rewrites ``id``/``model``/``system_fingerprint`` the way Ollama's writer does and
  turns upstream errors into Ollama's ``/v1`` error shape.
* DOUBLE: the model store and scheduler. ``/api/tags`` lists "pulled" models (each maps to
  a GGUF file on disk, with a manifest digest as Ollama reports); ``/api/ps`` lists the
  models "loaded" by ``/api/generate`` (empty prompt = load, ``keep_alive: 0`` = unload,
  ``done_reason`` ``load``/``unload``) or by a chat, expiring after ``keep_alive``;
  ``/api/pull`` streams the documented NDJSON progress while "downloading" the GGUF's
  size in steps; ``/api/delete`` forgets a model. Errors use Ollama's bodies:
  ``{"error": "model 'x' not found"}`` (404) natively, ``{"error": {"message", "type",
  "param", "code"}}`` under ``/v1``. ``/api/generate`` with a prompt answers 501: the
  router never uses it, and the double does not pretend.

Every request is recorded in :attr:`OllamaTestServer.requests` so tests can check what
the router actually sent (``keep_alive: 0`` on unload, for instance).

In-process use: ``with OllamaTestServer(library, pulled=[...]) as server: server.url``.
As a process (what a fake ``ollama`` binary execs): ``python -m tests.support.ollama_server
serve --model NAME=GGUF[@UPSTREAM_URL] ...``, listening on ``$OLLAMA_HOST`` like Ollama.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.service import free_port

VERSION = "0.6.8"
DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's default keep_alive, "5m"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class LibraryModel:
    """A model the double can "pull": its GGUF on disk and the real llama-server that generates for it."""

    gguf: Path
    upstream: str | None = None
    family: str = "llama"
    parameter_size: str = "135M"
    quantization_level: str = "Q4_1"

    @property
    def size(self) -> int:
        return self.gguf.stat().st_size

    def layer_digest(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.gguf.resolve()}:{self.size}".encode()).hexdigest()

    def manifest_digest(self, name: str) -> str:
        """Ollama's ``digest`` in /api/tags is the manifest's, not the weights'."""
        return hashlib.sha256(f"{name}:{self.layer_digest()}".encode()).hexdigest()


def canonical(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def parse_keep_alive(value: Any) -> float | None:
    """Seconds until expiry (None = never), as Ollama's ``api.Duration`` parses it.

    Numbers are seconds; strings are Go durations (``"10m"``, ``"1h30m"``, ``"0"``); any
    negative value means "keep forever".
    """
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        body = text.lstrip("+-")
        parts = _DURATION_PART.findall(body)
        if body != "0" and (not parts or "".join(number + unit for number, unit in parts) != body):
            raise ValueError(f'time: invalid duration "{text}"')
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
        seconds = -seconds if text.startswith("-") else seconds
    return None if seconds < 0 else seconds


def _now() -> str:
    return datetime.now(UTC).isoformat()


def native_error(status: int, message: str) -> JSONResponse:
    """Ollama's native error body."""
    return JSONResponse({"error": message}, status_code=status)


def openai_error(status: int, message: str) -> JSONResponse:
    """Ollama's ``/v1`` error body (``openai.NewError``): the type follows the status."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status_code=status)


class OllamaTestServer:
    """The double's state and its Starlette app; :meth:`start` runs it with uvicorn in a thread."""

    def __init__(self, library: Mapping[str, LibraryModel], pulled: Iterable[str] = (), pull_steps: int = 8) -> None:
        self.library = {canonical(name): model for name, model in library.items()}
        self.pulled: dict[str, str] = {}
        for name in pulled:
            self._mark_pulled(canonical(name))
        self.loaded: dict[str, float | None] = {}  # name -> monotonic expiry (None: never)
        self.requests: list[tuple[str, str, Any]] = []
        self._pull_steps = pull_steps
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/", lambda _: Response("Ollama is running"), methods=["GET", "HEAD"]),
                Route("/api/version", self.version, methods=["GET"]),
                Route("/api/tags", self.tags, methods=["GET"]),
                Route("/api/ps", self.ps, methods=["GET"]),
                Route("/api/generate", self.generate, methods=["POST"]),
                Route("/api/pull", self.pull, methods=["POST"]),
                Route("/api/delete", self.delete, methods=["DELETE"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------ state

    def _mark_pulled(self, name: str) -> None:
        self.pulled[name] = datetime.now(UTC).isoformat()

    def _load(self, name: str, keep_alive: Any) -> None:
        seconds = parse_keep_alive(keep_alive)
        if seconds == 0:
            self.loaded.pop(name, None)
        else:
            self.loaded[name] = None if seconds is None else time.monotonic() + seconds

    def running(self) -> list[str]:
        now = time.monotonic()
        return [name for name, expiry in self.loaded.items() if expiry is None or expiry > now]

    def requests_to(self, path: str) -> list[Any]:
        """Bodies of the requests received on ``path``, oldest first."""
        return [body for _, seen, body in self.requests if seen == path]

    def _card(self, name: str) -> dict[str, Any]:
        model = self.library[name]
        return {
            "name": name,
            "model": name,
            "size": model.size,
            "digest": model.manifest_digest(name),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": model.family,
                "families": [model.family],
                "parameter_size": model.parameter_size,
                "quantization_level": model.quantization_level,
            },
        }

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        self.requests.append((request.method, request.url.path, body))
        return body

    # ------------------------------------------------------------------ native API

    async def version(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        return JSONResponse({"version": VERSION})

    async def tags(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        models = [{**self._card(name), "modified_at": modified} for name, modified in self.pulled.items()]
        return JSONResponse({"models": models})

    async def ps(self, request: Request) -> Response:
        self.requests.append((request.method, request.url.path, None))
        models = []
        for name in self.running():
            expiry = self.loaded[name]
            expires = datetime.now(UTC) + timedelta(days=365 * 100 if expiry is None else expiry - time.monotonic())
            models.append({**self._card(name), "expires_at": expires.isoformat(), "size_vram": 0})
        return JSONResponse({"models": models})

    async def generate(self, request: Request) -> Response:
        try:
            body = await self._body(request)
        except ValueError as error:
            return native_error(400, f"invalid character in request body: {error}")
        if not body.get("model"):
            return native_error(400, "model is required")
        name = canonical(body["model"])
        if name not in self.pulled:
            return native_error(404, f"model '{body['model']}' not found")
        if body.get("prompt"):
            return native_error(501, "the Ollama test server implements only load/unload on /api/generate")
        try:
            self._load(name, body.get("keep_alive"))
        except ValueError as error:
            return native_error(400, str(error))
        reason = "unload" if name not in self.loaded else "load"
        return JSONResponse(
            {"model": body["model"], "created_at": _now(), "response": "", "done": True, "done_reason": reason}
        )

    async def delete(self, request: Request) -> Response:
        body = await self._body(request)
        name = canonical(str(body.get("model") or body.get("name") or ""))
        if name not in self.pulled:
            return native_error(404, f"model '{body.get('model')}' not found")
        del self.pulled[name]
        self.loaded.pop(name, None)
        return Response(status_code=200)

    async def pull(self, request: Request) -> Response:
        body = await self._body(request)
        requested = str(body.get("model") or body.get("name") or "")
        name = canonical(requested)
        if not requested:
            return native_error(400, "model is required")
        events = self._pull_events(name)
        if body.get("stream") is False:
            last: dict[str, Any] = {}
            async for event in events:
                last = event
            return JSONResponse(last, status_code=500 if "error" in last else 200)

        async def ndjson() -> AsyncIterator[bytes]:
            async for event in events:
                yield json.dumps(event).encode() + b"\n"

        return StreamingResponse(ndjson(), media_type="application/x-ndjson")

    async def _pull_events(self, name: str) -> AsyncIterator[dict[str, Any]]:
        """The documented sequence: manifest, per-layer byte counts, verify, write, success."""
        yield {"status": "pulling manifest"}
        model = self.library.get(name)
        if model is None:
            yield {"error": "pull model manifest: file does not exist"}
            return
        digest = model.layer_digest()
        total = model.size
        yield {"status": f"pulling {digest[7:19]}", "digest": digest, "total": total}
        for step in range(1, self._pull_steps + 1):
            await asyncio.sleep(0.01)
            yield {
                "status": f"pulling {digest[7:19]}",
                "digest": digest,
                "total": total,
                "completed": total * step // self._pull_steps,
            }
        for status in ("verifying sha256 digest", "writing manifest", "success"):
            yield {"status": status}
        self._mark_pulled(name)

    # ------------------------------------------------------------------ OpenAI-compatible API

    async def chat_completions(self, request: Request) -> Response:
        try:
            body = await self._body(request)
        except ValueError as error:
            return openai_error(400, str(error))
        if not body.get("messages"):
            return openai_error(400, "[] is too short - 'messages'")
        requested = str(body.get("model", ""))
        name = canonical(requested)
        if name not in self.pulled:
            return openai_error(404, f"model '{requested}' not found")
        upstream = self.library[name].upstream
        if upstream is None:
            return openai_error(500, f"the Ollama test server has no llama-server to generate for {name}")
        self._load(name, None)  # Ollama loads on demand with the default keep_alive
        reply_id = f"chatcmpl-{random.randrange(999)}"
        client = httpx.AsyncClient(base_url=upstream, timeout=httpx.Timeout(10.0, read=120.0))
        upstream_request = client.build_request("POST", "/v1/chat/completions", json={**body, "model": name})
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.HTTPError as error:
            await client.aclose()
            return openai_error(500, f"llama runner process has terminated: {error}")
        if response.status_code != 200:
            await response.aread()
            await client.aclose()
            message = response.json().get("error", {}).get("message", response.text)
            return openai_error(response.status_code, message)
        if not body.get("stream"):
            payload = json.loads(await response.aread())
            await client.aclose()
            return JSONResponse({**payload, "id": reply_id, "model": requested, "system_fingerprint": "fp_ollama"})

        async def events() -> AsyncIterator[bytes]:
            try:
                async for line in response.aiter_lines():
                    if line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        chunk.update(id=reply_id, model=requested, system_fingerprint="fp_ollama")
                        yield b"data: " + json.dumps(chunk).encode() + b"\n\n"
                    elif line == "data: [DONE]":
                        yield b"data: [DONE]\n\n"
            finally:
                await response.aclose()
                await client.aclose()

        return StreamingResponse(events(), media_type="text/event-stream")

    # ------------------------------------------------------------------ running it

    def start(self, host: str = "127.0.0.1", port: int | None = None) -> str:
        """Serve in a background thread; return the base URL once it accepts connections."""
        port = port or free_port()
        config = uvicorn.Config(self.app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"ollama-test-server:{port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Ollama test server did not start on {host}:{port}")
            time.sleep(0.02)
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> OllamaTestServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _parse_model(spec: str) -> tuple[str, LibraryModel]:
    name, _, rest = spec.partition("=")
    gguf, _, upstream = rest.partition("@")
    return name, LibraryModel(Path(gguf), upstream or None)


def main(argv: list[str] | None = None) -> None:
    """``serve``, like the real binary, listening on ``$OLLAMA_HOST``; every library model starts pulled."""
    parser = argparse.ArgumentParser(prog="ollama-test-server")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=GGUF[@UPSTREAM]")
    args = parser.parse_args(argv)
    library = dict(_parse_model(spec) for spec in args.model)
    host, _, port = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434").rpartition(":")
    server = OllamaTestServer(library, pulled=library)
    uvicorn.run(server.app, host=host or "127.0.0.1", port=int(port), log_level="info", lifespan="off")


if __name__ == "__main__":
    main()
