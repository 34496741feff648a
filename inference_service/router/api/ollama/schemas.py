"""The request bodies of Ollama's native API (``docs/api.md`` of github.com/ollama/ollama).

Validated before anything is resolved or loaded, like the OpenAI bodies: a wrong type is a
400 naming the field. Unlike the OpenAI endpoints, nothing passes through untranslated, so
fields this server does not know are refused (``extra="forbid"``) rather than dropped in
silence; the options it cannot honour are refused by name in :mod:`.requests`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from inference_service.router.proxy.schemas import OrchestrationMode, OrchestrationOptions, TaskType

ThinkLevel = Literal["low", "medium", "high", "max"]
#: ``format``: JSON mode, or a JSON schema the answer must match ("" is no format, as Ollama has it).
Format = Literal["", "json"] | dict[str, Any]
#: ``keep_alive``: seconds, or a Go duration string ("5m", "1h30m", "-1").
KeepAlive = float | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OllamaOptions(BaseModel):
    """``options``: the Modelfile parameters a request may set. Typed here so a wrong type is a
    400; which ones reach the runtime, and how, is :data:`.requests.SAMPLING_OPTIONS`."""

    model_config = ConfigDict(extra="allow")

    num_predict: int | None = None
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    seed: int | None = None
    stop: list[str] | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    mirostat: int | None = None
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    num_keep: int | None = None
    num_ctx: int | None = None


class OllamaToolCallFunction(_Strict):
    index: int | None = None
    name: str
    arguments: dict[str, Any] = {}


class OllamaToolCall(_Strict):
    id: str | None = None
    function: OllamaToolCallFunction


class OllamaMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None


class _Generation(_Strict):
    """What ``/api/chat`` and ``/api/generate`` share."""

    model: str = Field(min_length=1)
    stream: bool = True
    format: Format | None = None
    options: OllamaOptions | None = None
    keep_alive: KeepAlive | None = None
    think: bool | ThinkLevel | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    priority: int = Field(default=2, ge=1, le=3, description="admission order: 1 low, 2 normal, 3 high")


class OllamaChatRequest(_Generation):
    """``POST /api/chat``; the router's orchestration fields as in an OpenAI chat body."""

    messages: list[OllamaMessage] = []
    tools: list[dict[str, Any]] | None = None
    orchestration_mode: OrchestrationMode | None = None
    task_type: TaskType = TaskType.GENERAL
    preset: str | None = None
    orchestration: OrchestrationOptions | None = None


class OllamaGenerateRequest(_Generation):
    """``POST /api/generate``."""

    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None
    context: list[int] | None = None


class OllamaEmbedRequest(_Strict):
    """``POST /api/embed``."""

    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool | None = None
    dimensions: int | None = Field(default=None, ge=1)
    options: OllamaOptions | None = None
    keep_alive: KeepAlive | None = None
    priority: int = Field(default=2, ge=1, le=3)


class OllamaEmbeddingsRequest(_Strict):
    """``POST /api/embeddings``: the legacy form, one ``prompt``, one ``embedding``."""

    model: str = Field(min_length=1)
    prompt: str
    options: OllamaOptions | None = None
    keep_alive: KeepAlive | None = None
    priority: int = Field(default=2, ge=1, le=3)


class OllamaShowRequest(_Strict):
    """``POST /api/show``; older clients name the model ``name``."""

    model: str | None = Field(default=None, min_length=1)
    name: str | None = Field(default=None, min_length=1)
    verbose: bool | None = None


REQUEST_MODELS: tuple[type[BaseModel], ...] = (
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaEmbedRequest,
    OllamaEmbeddingsRequest,
    OllamaShowRequest,
)
