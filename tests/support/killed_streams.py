"""Streams whose llama-server is SIGKILLed mid-answer, read the way a client reads them.

The resume tests (tests/integration/continuity/) kill the model's own child - by the pid its
card in ``/v1/models/{id}`` shows, a grandchild of the test - once a given number of text
deltas arrived, then read the stream to its end. Events are kept as (name, data) pairs, so a
chat stream (unnamed ``data:`` events, ``[DONE]``) and the named-event streams of the
Anthropic Messages and Responses APIs are read the same way.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.api import model_card
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"
TIMEOUT_S = 300.0


def long_greedy_chat(model_id: str, max_tokens: int) -> dict[str, Any]:
    """A streamed chat request whose greedy answer runs to ``max_tokens``, so any point of it can be cut."""
    return {
        "model": model_id,
        "messages": [{"role": "user", "content": "Write a long story about a cat who learns to sail."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def text_delta(path: str, name: str | None, payload: dict[str, Any]) -> str | None:
    """The answer text an event adds, for the API at ``path`` (None: not a text delta)."""
    if path == CHAT:
        choices = payload.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or None
    if path == MESSAGES and name == "content_block_delta":
        return (payload.get("delta") or {}).get("text")
    if path == RESPONSES and name == "response.output_text.delta":
        return payload.get("delta")
    return None


@dataclass
class ReadStream:
    """Everything one streamed response carried, and the pid killed while it ran (None: none was)."""

    path: str
    status: int
    headers: httpx.Headers
    events: list[tuple[str | None, str]] = field(default_factory=list)
    killed_pid: int | None = None
    #: The text the client had when the child was killed.
    text_at_kill: str = ""

    def payloads(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON payloads (of the events called ``name``, if given)."""
        return [
            json.loads(data) for event, data in self.events if data.startswith("{") and (name is None or event == name)
        ]

    @property
    def text(self) -> str:
        return "".join(
            piece for event, data in self.events if data.startswith("{") and (piece := self._delta(event, data))
        )

    def _delta(self, name: str | None, data: str) -> str | None:
        return text_delta(self.path, name, json.loads(data))

    @property
    def errors(self) -> list[str]:
        """Error events of any API: an ``error`` event, or a chat chunk carrying ``error``."""
        return [data for event, data in self.events if event == "error" or data.startswith('{"error"')]

    @property
    def names(self) -> list[str | None]:
        return [event for event, _ in self.events]


def read_stream(
    service: ServiceProcess, path: str, body: dict[str, Any], on_delta: Callable[[ReadStream, int], None] | None = None
) -> ReadStream:
    """POST a stream and read it to its end; ``on_delta(read, n)`` after its n-th text delta."""
    with httpx.stream("POST", service.url + path, json=body, timeout=TIMEOUT_S) as response:
        read = ReadStream(path, response.status_code, response.headers)
        if response.status_code != 200:
            read.events.append(("error", response.read().decode()))
            return read
        name: str | None = None
        deltas = 0
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
                continue
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            read.events.append((name, data))
            if on_delta is not None and data.startswith("{") and text_delta(path, name, json.loads(data)):
                deltas += 1
                on_delta(read, deltas)
            name = None
    return read


def stream_killing_the_model(
    service: ServiceProcess, model_id: str, path: str, body: dict[str, Any], kill_after: int | None
) -> ReadStream:
    """POST a stream; SIGKILL ``model_id``'s llama-server once ``kill_after`` text deltas arrived (None: never)."""

    def kill_there(read: ReadStream, deltas: int) -> None:
        if deltas == kill_after:
            read.text_at_kill = read.text
            read.killed_pid = kill_model(service, model_id)

    return read_stream(service, path, body, kill_there)


def kill_model(service: ServiceProcess, model_id: str) -> int:
    """SIGKILL the llama-server serving ``model_id`` (the test's own grandchild, by pid); its pid."""
    pid = model_card(service, model_id)["pid"]
    assert pid, f"{model_id} has no process to kill"
    os.kill(pid, signal.SIGKILL)
    return int(pid)


def resumes(service: ServiceProcess, outcome: str, model_id: str) -> float:
    """``inference_stream_resumes_total`` of ``model_id`` for ``outcome`` (0 before the first)."""
    metrics = httpx.get(f"{service.url}/metrics", timeout=TIMEOUT_S).text
    return sample(metrics, "inference_stream_resumes_total", model=model_id, outcome=outcome) or 0.0
