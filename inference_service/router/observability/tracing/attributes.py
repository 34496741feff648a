"""What a span says about a request, in the words of the GenAI semantic conventions (v0.1.0,
open-telemetry/semantic-conventions-genai): the operation, the sampling parameters asked for,
the finish reasons. Everything here reads what the router already holds - a parsed request
body, the bytes of a reply - and never parses a reply whole (see proxy/usage.py for why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

#: An API's endpoint label (its path without ``/v1/``, or the label it gives itself) -> gen_ai.operation.name.
#: Anything else (rerank, tokenize, ...) is named by its label: the conventions allow custom values.
_OPERATIONS = {
    "chat/completions": "chat",
    "messages": "chat",
    "responses": "chat",
    "api/chat": "chat",
    "completions": "text_completion",
    "completion": "text_completion",
    "infill": "text_completion",
    "api/generate": "text_completion",
    "embeddings": "embeddings",
    "api/embed": "embeddings",
    "api/embeddings": "embeddings",
}
#: Runtime kind -> gen_ai.provider.name. A remote host is spoken to with OpenAI's API, which is what
#: the attribute tells a backend (the conventions: "the instrumentation's best knowledge").
PROVIDERS = {"llamacpp": "llama.cpp", "ollama": "ollama", "remote": "openai"}

_MAX_TOKENS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict")
_FLOATS = {"temperature": "gen_ai.request.temperature", "top_p": "gen_ai.request.top_p"}
_INTS = {"top_k": "gen_ai.request.top_k", "seed": "gen_ai.request.seed"}
#: A finish reason as OpenAI (``finish_reason``), Anthropic (``stop_reason``) and Ollama's
#: translation write it; a JSON string value, so a reason quoted inside generated text (its
#: quotes escaped) never matches.
_FINISH_REASON = re.compile(rb'"(?:finish_reason|stop_reason)"\s*:\s*"([A-Za-z0-9_.-]{1,64})"')
FINISH_REASON_HINT = b'_reason"'

AttributeValue = str | bool | int | float | Sequence[str]


def operation(endpoint: str) -> str:
    """``gen_ai.operation.name`` of an endpoint label or path (``/v1/chat/completions`` -> ``chat``)."""
    label = endpoint.removeprefix("/v1/").lstrip("/").partition(":")[0]
    return _OPERATIONS.get(label, label)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def request_attributes(body: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """``gen_ai.request.*`` from a request body: what the client asked the model for."""
    attributes: dict[str, AttributeValue] = {}
    if isinstance(model := body.get("model"), str):
        attributes["gen_ai.request.model"] = model
    for key in _MAX_TOKENS:
        if _number(value := body.get(key)):
            attributes["gen_ai.request.max_tokens"] = int(value)
            break
    for key, name in _FLOATS.items():
        if _number(value := body.get(key)):
            attributes[name] = float(value)
    for key, name in _INTS.items():
        if _number(value := body.get(key)):
            attributes[name] = int(value)
    if body.get("stream") is True:
        attributes["gen_ai.request.stream"] = True
    stop = body.get("stop")
    if isinstance(stop, str):
        attributes["gen_ai.request.stop_sequences"] = [stop]
    elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        attributes["gen_ai.request.stop_sequences"] = stop
    return attributes


def finish_reasons(data: bytes) -> list[str]:
    """The finish reasons written in ``data`` (a reply, or a run of stream events), in order."""
    return [reason.decode() for reason in _FINISH_REASON.findall(data)]


def usage_attributes(usage: Mapping[str, Any] | None) -> dict[str, AttributeValue]:
    """``gen_ai.usage.*`` from a usage object, whichever API's names it uses."""
    if not usage:
        return {}
    pairs = (
        ("gen_ai.usage.input_tokens", usage.get("prompt_tokens", usage.get("input_tokens"))),
        ("gen_ai.usage.output_tokens", usage.get("completion_tokens", usage.get("output_tokens"))),
    )
    return {name: value for name, value in pairs if isinstance(value, int) and not isinstance(value, bool)}
