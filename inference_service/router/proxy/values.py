"""Pass-through values a runtime mishandles, checked before the request is admitted or loads anything.

The router forwards a client's JSON as it is, and llama-server trusts some of it too far:
``max_tokens`` is read into 32 bits (4294967300 became 4 tokens, silently),
``top_logprobs = 49152`` built a 94 MB reply and grew the child by 1.3 GB, a malformed
``tools`` entry or a negative token id is answered 500 (which the OpenAI SDK retries). The
schemas in :mod:`~inference_service.router.proxy.schemas` make these integers (422 for a
float, a string or ``true``); this module bounds them by what the model can do and checks
the shapes llama-server fails on - a 400 ``invalid_value`` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

from inference_service.config import ModelConfig
from inference_service.router.serving.errors import APIError

#: Fields asking for that many alternatives per token: OpenAI's, and llama-server's native name
#: (and the completions API's integer ``logprobs``).
LOGPROB_FIELDS = ("top_logprobs", "n_probs")
_COMPLETIONS_LOGPROB_FIELDS = (*LOGPROB_FIELDS, "logprobs")
#: Fields bounding the tokens to generate, in the APIs the router proxies (llama-server's native name last).
TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict")
#: The largest count a runtime's 32-bit field holds: the bound when the model's context is not known here.
INT32_MAX = 2**31 - 1
#: Paths whose body carries OpenAI chat ``tools`` (llama-server renders them into the template).
TOOL_PATHS = frozenset({"/v1/chat/completions", "/apply-template"})


def _invalid(param: str, message: str) -> APIError:
    return APIError(400, f"Invalid value for '{param}': {message}", param=param, code="invalid_value")


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def token_limit(model: ModelConfig) -> int:
    """The most tokens a request to ``model`` may ask for: its context when the router sets it."""
    return model.ctx_size if model.runtime == "llamacpp" and model.ctx_size > 0 else INT32_MAX


def _check_counts(model: ModelConfig, path: str, raw: Mapping[str, Any], max_logprobs: int) -> None:
    # On every proxied request: plain lookups and ``type(...) is int`` (a bool is no count), nothing more.
    for field in _COMPLETIONS_LOGPROB_FIELDS if path == "/v1/completions" else LOGPROB_FIELDS:
        value = raw.get(field)
        if type(value) is int and value > max_logprobs:
            raise _invalid(
                field, f"{value} is more than the {max_logprobs} alternatives per token allowed (max_logprobs)"
            )
    limit = token_limit(model)
    for field in TOKEN_FIELDS:
        value = raw.get(field)
        if type(value) is int and value > limit:
            where = f"model {model.id!r}'s context (ctx_size {limit})" if limit != INT32_MAX else f"{limit}"
            raise _invalid(field, f"{value} is more tokens than {where}")


def _check_tools(tools: Any) -> None:
    """OpenAI's shape: a list of ``{"type": ..., "function": {"name": ...}}`` (function tools need the name)."""
    if not isinstance(tools, list):
        raise _invalid("tools", "must be an array of tool objects")
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _invalid(f"{where}.type", "each tool needs a 'type' string (e.g. \"function\")")
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise _invalid(f"{where}.function.name", "a function tool needs 'function': {\"name\": ...}")


def _check_token_ids(tokens: Any) -> None:
    if not isinstance(tokens, list) or not all(_is_int(token) and token >= 0 for token in tokens):
        raise _invalid("tokens", "must be an array of token ids (integers >= 0)")


def check_values(model: ModelConfig, path: str, raw: Mapping[str, Any], max_logprobs: int) -> None:
    """400 ``invalid_value`` for a value ``model``'s runtime would misread or answer with a 5xx.

    ``max_logprobs``: the most alternatives per token a request may ask for (the ``max_logprobs``
    setting; OpenAI's own cap, 20, by default) - each costs a token's worth of JSON per generated token.
    """
    _check_counts(model, path, raw, max_logprobs)
    if path in TOOL_PATHS and "tools" in raw and raw["tools"] is not None:
        _check_tools(raw["tools"])
    if path == "/detokenize" and "tokens" in raw:
        _check_token_ids(raw["tokens"])
