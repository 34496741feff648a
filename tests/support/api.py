"""Tiny synchronous clients for the router's model-management and chat endpoints.

The supervisor tests drive a real router over HTTP; these keep each test about the
behaviour it checks instead of about request plumbing.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil

from inference_service.runtimes.llamacpp import API_KEY_ENV
from tests.support.service import ServiceProcess

TIMEOUT_S = 60.0


def model_card(service: ServiceProcess, model_id: str) -> dict[str, Any]:
    """``GET /v1/models/{id}``: the model's state, reason and process fields."""
    response = httpx.get(f"{service.url}/v1/models/{model_id}", timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def load(service: ServiceProcess, model_id: str) -> httpx.Response:
    """``POST /v1/models/{id}/load``; the response is returned whatever its status."""
    return httpx.post(f"{service.url}/v1/models/{model_id}/load", timeout=TIMEOUT_S)


def unload(service: ServiceProcess, model_id: str, timeout_s: float = TIMEOUT_S) -> httpx.Response:
    """``timeout_s``: an unload answers once in-flight requests drained - as long as they take."""
    return httpx.post(f"{service.url}/v1/models/{model_id}/unload", timeout=timeout_s)


def chat(service: ServiceProcess, model_id: str, max_tokens: int = 2, timeout_s: float = TIMEOUT_S) -> httpx.Response:
    """One short chat completion (a couple of tokens keeps the contended CPU free).

    ``timeout_s``: a request queued behind other models' loads answers when the service's own
    ``queue_timeout_s`` says, however slow the machine - a test of queueing waits longer than that.
    """
    return httpx.post(
        f"{service.url}/v1/chat/completions",
        json={"model": model_id, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": max_tokens},
        timeout=timeout_s,
    )


def child_headers(service: ServiceProcess, model_id: str) -> dict[str, str]:
    """The ``Authorization`` a model's llama-server wants: its key is the router's alone, so a
    test reads it where only the child's owner can, in the child's environment."""
    pid = model_card(service, model_id)["pid"]
    assert pid, f"{model_id} has no process"
    return {"Authorization": f"Bearer {psutil.Process(pid).environ()[API_KEY_ENV]}"}


def llama_servers(service: ServiceProcess) -> list[psutil.Process]:
    """The router's live llama-server children."""
    found = []
    for child in service.children():
        try:
            if child.name().startswith("llama-server") and child.status() != psutil.STATUS_ZOMBIE:
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@contextmanager
def abandoned_post(base_url: str, body: dict[str, Any], path: str = "/v1/chat/completions") -> Iterator[socket.socket]:
    """A POST whose client sends the request and reads nothing; the socket closes when the block exits."""
    payload = json.dumps(body).encode()
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (path.encode(), host.encode(), len(payload), payload)
        )
        yield sock
