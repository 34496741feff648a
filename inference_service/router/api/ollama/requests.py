"""Ollama's requests as the router's internal ones: OpenAI chat, completions and embeddings
bodies (llama-server's ``/infill`` for a ``suffix``), so they take the one proxy path every
API shares - admission, fallbacks, metrics, the access log.

Everything Ollama's API can ask for either has a translation here or is refused with a 400
that says why; nothing is dropped in silence (``num_ctx`` alone is accepted and left to the
model's configured ``ctx_size``, since Ollama clients send it with every request).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from inference_service.router.api.ollama.schemas import (
    Format,
    KeepAlive,
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaMessage,
    OllamaOptions,
    ThinkLevel,
)
from inference_service.router.proxy.sse import asking_usage
from inference_service.router.serving.errors import APIError

#: Ollama's per-request options and the field each becomes in the OpenAI body (llama.cpp's own
#: names where OpenAI has none: llama-server and OpenAI-compatible hosts built on it read them).
SAMPLING_OPTIONS: dict[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
    "num_keep": "n_keep",
}
#: Options Ollama applies when it loads a model: here the model's config decides them, once.
LOAD_TIME_OPTIONS = frozenset(
    {
        "numa",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "low_vram",
        "f16_kv",
        "logits_all",
        "vocab_only",
        "use_mmap",
        "use_mlock",
        "embedding_only",
        "num_thread",
    }
)
#: Ollama options llama-server has no counterpart for.
UNSUPPORTED_OPTIONS = {
    "tfs_z": "llama.cpp removed tail-free sampling",
    "penalize_newline": "llama.cpp removed it",
    "draft_num_predict": "models here run without a draft model",
}


class Source(StrEnum):
    """Which upstream API answers: it decides how the reply is read back."""

    CHAT = "/v1/chat/completions"
    COMPLETION = "/v1/completions"
    INFILL = "/infill"


@dataclass(frozen=True)
class UpstreamCall:
    """The internal request an Ollama request became."""

    source: Source
    body: dict[str, Any]


def _refusal(name: str) -> str:
    if name in LOAD_TIME_OPTIONS:
        return (
            f"option {name!r} is a load-time setting: here each model's config decides it "
            "(its [models.<id>] table), not a request"
        )
    if name in UNSUPPORTED_OPTIONS:
        return f"option {name!r} is not supported: {UNSUPPORTED_OPTIONS[name]}"
    known = ", ".join(sorted([*SAMPLING_OPTIONS, "num_predict", "num_ctx"]))
    return f"unknown option {name!r}; the options served are: {known}"


def sampling_fields(options: OllamaOptions | None) -> dict[str, Any]:
    """``options`` as OpenAI/llama.cpp body fields; 400 for one that cannot be honoured."""
    fields: dict[str, Any] = {}
    for name, value in (options.model_dump(exclude_none=True) if options else {}).items():
        if name == "num_ctx":
            continue  # the context is the model's ctx_size, fixed when it loads
        if name == "num_predict":
            if value > 0:
                fields["max_tokens"] = value
            elif value not in (-1, -2):  # no limit / fill the context: the runtime's own limit then
                raise APIError(400, "options.num_predict must be positive, -1 (no limit) or -2 (fill the context)")
        elif name in SAMPLING_OPTIONS:
            fields[SAMPLING_OPTIONS[name]] = value
        else:
            raise APIError(400, _refusal(name), param=f"options.{name}")
    return fields


def thinking_fields(think: bool | ThinkLevel | None) -> dict[str, Any]:
    """``think`` as the two switches runtimes read: the chat template's ``enable_thinking``
    (llama-server, vLLM) and OpenAI's ``reasoning_effort`` (llama-server, Ollama)."""
    if think is None:
        return {}
    if think is False:
        return {"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": False}}
    level = {} if think is True else {"reasoning_effort": think}
    return {**level, "chat_template_kwargs": {"enable_thinking": True}}


def _chat_format(format: Format | None) -> dict[str, Any]:
    if format == "json":
        return {"response_format": {"type": "json_object"}}
    if isinstance(format, dict):
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": format}}}
    return {}


def _completion_format(format: Format | None) -> dict[str, Any]:
    """llama.cpp's ``json_schema`` (its /v1/completions reads no ``response_format``); {} is any object."""
    if format == "json":
        return {"json_schema": {}}
    if isinstance(format, dict):
        return {"json_schema": format}
    return {}


_IMAGE_MAGIC = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"RIFF": "image/webp"}


def _image_url(image: str) -> str:
    """A base64 image (Ollama's form) as a data URL (OpenAI's); 400 if it is not base64."""
    if image.startswith("data:"):
        return image
    try:
        head = base64.b64decode(image[:16] + "=" * (-len(image[:16]) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "images must be base64-encoded image files", param="images") from None
    mime = next((mime for magic, mime in _IMAGE_MAGIC.items() if head.startswith(magic)), "image/png")
    return f"data:{mime};base64,{image}"


def _content(text: str, images: list[str] | None) -> str | list[dict[str, Any]]:
    """Text and images as OpenAI content: a text-only model's runtime refuses the images (400)."""
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    return parts + [{"type": "image_url", "image_url": {"url": _image_url(image)}} for image in images]


def openai_messages(messages: list[OllamaMessage]) -> list[dict[str, Any]]:
    """Ollama's messages as OpenAI's: tool calls get ids (Ollama's may have none) and a tool
    result names the call it answers, found by its ``tool_name`` when it gives no id."""
    converted: list[dict[str, Any]] = []
    call_ids: dict[str, str] = {}
    for number, message in enumerate(messages):
        entry: dict[str, Any] = {"role": message.role, "content": _content(message.content, message.images)}
        if message.thinking:
            entry["reasoning_content"] = message.thinking
        if message.tool_calls:
            entry["tool_calls"] = []
            for index, call in enumerate(message.tool_calls):
                call_id = call.id or f"call_{number}_{index}"
                call_ids[call.function.name] = call_id
                function = {"name": call.function.name, "arguments": json.dumps(call.function.arguments)}
                entry["tool_calls"].append({"id": call_id, "type": "function", "function": function})
        if message.role == "tool":
            answered = message.tool_call_id or call_ids.get(message.tool_name or "")
            if answered:
                entry["tool_call_id"] = answered
            if message.tool_name:
                entry["name"] = message.tool_name
        converted.append(entry)
    return converted


def _refuse_logprobs(request: OllamaChatRequest | OllamaGenerateRequest) -> None:
    if request.logprobs or request.top_logprobs:
        raise APIError(400, "logprobs are not supported on /api/*: use /v1/chat/completions", param="logprobs")


def _streamed(body: dict[str, Any], stream: bool) -> dict[str, Any]:
    """The body with ``stream``; a stream asks for usage (the token counts of the last line)."""
    return asking_usage({**body, "stream": True}) if stream else body


def chat_call(request: OllamaChatRequest) -> UpstreamCall:
    """``/api/chat`` as an OpenAI chat completion."""
    _refuse_logprobs(request)
    body: dict[str, Any] = {
        "messages": openai_messages(request.messages),
        **sampling_fields(request.options),
        **thinking_fields(request.think),
        **_chat_format(request.format),
    }
    if request.tools:
        body["tools"] = request.tools
    return UpstreamCall(Source.CHAT, _streamed(body, request.stream))


def generate_call(request: OllamaGenerateRequest, model_chats: bool) -> UpstreamCall:
    """``/api/generate``: the prompt through the model's chat template (as Ollama applies its
    template), as it stands with ``raw`` or for a model that does not chat, and to ``/infill``
    (fill-in-the-middle) with a ``suffix``."""
    _refuse_logprobs(request)
    if request.template:
        raise APIError(
            400,
            "custom prompt templates are not supported: the model's own chat template applies; "
            "send a fully templated prompt with raw: true instead",
            param="template",
        )
    if request.context:
        raise APIError(400, "the deprecated 'context' is not supported: keep a conversation with /api/chat")
    sampling = sampling_fields(request.options)
    plain = not (request.raw or request.suffix) and model_chats
    if not plain:
        for name in ("system", "images", "think"):
            if getattr(request, name) not in (None, "", []):
                mode = "a suffix" if request.suffix else "raw" if request.raw else "a model that does not chat"
                raise APIError(400, f"'{name}' needs the chat template, which is not applied with {mode}", param=name)
    if request.suffix:
        body = {"input_prefix": request.prompt, "input_suffix": request.suffix, "prompt": "", **sampling}
        return UpstreamCall(Source.INFILL, {**body, **_completion_format(request.format), "stream": request.stream})
    if not plain:
        body = {"prompt": request.prompt, **sampling, **_completion_format(request.format)}
        return UpstreamCall(Source.COMPLETION, _streamed(body, request.stream))
    system = [OllamaMessage(role="system", content=request.system)] if request.system else []
    user = OllamaMessage(role="user", content=request.prompt, images=request.images)
    body = {
        "messages": openai_messages([*system, user]),
        **sampling,
        **thinking_fields(request.think),
        **_chat_format(request.format),
    }
    return UpstreamCall(Source.CHAT, _streamed(body, request.stream))


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def keep_alive_s(keep_alive: KeepAlive | None) -> float | None:
    """``keep_alive`` in seconds: a number is seconds, a string a Go duration ("5m", "1h30m");
    negative is for ever (``inf``). None when not given; 400 when unreadable."""
    if keep_alive is None:
        return None
    if isinstance(keep_alive, str):
        text = keep_alive.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        text = text.lstrip("+-")
        try:
            seconds = float(text)
        except ValueError:
            if not text or _DURATION.sub("", text):
                raise APIError(
                    400, f'keep_alive {keep_alive!r} is not a duration (e.g. 300, "5m", "-1")', param="keep_alive"
                ) from None
            seconds = sum(float(amount) * _UNIT_S[unit] for amount, unit in _DURATION.findall(text))
        keep_alive = sign * seconds
    if math.isnan(keep_alive):
        raise APIError(400, "keep_alive must be a number of seconds or a duration", param="keep_alive")
    return math.inf if keep_alive < 0 else float(keep_alive)
