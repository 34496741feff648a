"""The contract between the supervisor and a runtime.

The supervisor owns *state* (loading, loaded, failed, restarts, capacity); a runtime
only knows *mechanics*: how to bring one model to a serving OpenAI-compatible endpoint,
how to notice when that endpoint stops serving, and how to release it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from inference_service.processes import ProcessInfo

__all__ = ["Endpoint", "ProcessInfo", "Runtime", "RuntimeStartError"]


@dataclass(frozen=True)
class Endpoint:
    """Where the router sends a model's OpenAI-compatible traffic."""

    base_url: str
    model_name: str
    headers: Mapping[str, str] = field(default_factory=dict)


#: OpenAI chat, completions and embeddings: what every runtime serves.
OPENAI_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
#: Everything llama-server serves that the router proxies by the request's ``model``.
LLAMA_SERVER_PATHS = OPENAI_PATHS | {
    "/v1/responses",
    "/v1/messages",
    "/v1/messages/count_tokens",
    "/v1/rerank",
    "/tokenize",
    "/detokenize",
    "/infill",
    "/apply-template",
}


class RuntimeStartError(Exception):
    """The runtime could not bring the model up; ``reason`` is meant for operators."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Runtime(Protocol):
    """One model on one runtime."""

    #: Backends we do not own (remote hosts, an external Ollama) heal by themselves:
    #: while down the model is ``failed`` and is probed, rather than restarted.
    self_healing: bool
    #: Whether the model occupies memory on this machine (counts against capacity limits).
    local: bool
    #: The API paths the runtime serves; None when it cannot be known (an arbitrary remote server).
    served_paths: frozenset[str] | None

    async def start(self) -> Endpoint:
        """Bring the model up and return its endpoint once it serves; raise RuntimeStartError."""
        ...

    async def wait_until_down(self) -> str:
        """Return (with a reason) as soon as a started model stops serving."""
        ...

    async def stop(self) -> None:
        """Release the model; idempotent."""
        ...

    def process_info(self) -> ProcessInfo | None: ...

    def log_lines(self) -> Sequence[str]: ...
