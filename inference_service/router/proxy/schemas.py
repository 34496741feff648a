"""Request bodies. Unknown fields pass through to the runtime untouched (``extra="allow"``);
the router's own fields are validated here and removed before forwarding."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt


class OrchestrationMode(StrEnum):
    SINGLE = "single"
    CRITIQUE = "critique"
    DEBATE = "debate"
    ENSEMBLE = "ensemble"
    PIPELINE = "pipeline"


class TaskType(StrEnum):
    """The closed list of task types; each picks the role that serves a role-less request."""

    GENERAL = "general"
    CODE = "code"
    REASONING = "reasoning"
    SIMPLE = "simple"
    DOCUMENT = "document"
    CREATIVE = "creative"


ROLE_FOR_TASK: dict[TaskType, str] = {
    TaskType.GENERAL: "primary",
    TaskType.CODE: "coder",
    TaskType.REASONING: "thinker",
    TaskType.SIMPLE: "fast",
    TaskType.DOCUMENT: "primary",
    TaskType.CREATIVE: "primary",
}

ROUTER_ONLY_FIELDS = frozenset({"orchestration_mode", "task_type", "priority", "preset", "orchestration"})


class _PassThrough(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    stream: bool = False
    priority: int = Field(default=2, ge=1, le=3, description="admission order: 1 low, 2 normal, 3 high")
    # Integers, strictly: a runtime reads them into C integers, where true, 1e12 or 4294967300 silently
    # become something else. Their upper bounds depend on the model (proxy/values.py).
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    max_output_tokens: StrictInt | None = Field(default=None, ge=1)
    n_predict: StrictInt | None = Field(default=None, ge=-1, description="llama-server's own; -1: until done")
    top_logprobs: StrictInt | None = Field(default=None, ge=0)
    n_probs: StrictInt | None = Field(default=None, ge=0)


class _Sampling(_PassThrough):
    """Sampling fields the router checks itself, so a bad value is a 422 naming the field
    before anything is loaded or sent upstream (runtimes answer these inconsistently)."""

    temperature: float | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=1)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer", "function"]
    content: str | list[dict[str, Any]] | None = None


class OrchestrationOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(default=None, min_length=1)
    rounds: int = Field(default=1, ge=1, le=3)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    orchestration_mode: OrchestrationMode = OrchestrationMode.SINGLE
    task_type: TaskType = TaskType.GENERAL
    preset: str | None = None
    orchestration: OrchestrationOptions | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]


class EmbeddingRequest(_PassThrough):
    input: str | list[str] | list[int] | list[list[int]]


def without_router_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The client's own JSON minus the router-only fields; the dispatcher sets the runtime's model name."""
    return {key: value for key, value in raw.items() if key not in ROUTER_ONLY_FIELDS}


class ProxiedRequest(_PassThrough):
    """Any other proxied body (Responses, Anthropic Messages, llama-server's own endpoints):
    the router reads only ``model``, ``stream`` and ``priority``; the runtime validates the rest."""
