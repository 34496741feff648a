"""Values a runtime would misread or answer with a 5xx: a 400 naming the field, before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest

from inference_service.config import ModelConfig
from inference_service.router.proxy.values import INT32_MAX, check_values
from inference_service.router.serving.errors import APIError

LLAMA = ModelConfig(id="m", runtime="llamacpp", path="m.gguf", ctx_size=2048)
REMOTE = ModelConfig(id="r", runtime="remote", url="http://127.0.0.1:1")
CHAT = "/v1/chat/completions"
MAX_LOGPROBS = 20


def check(model: ModelConfig, path: str, raw: dict[str, Any]) -> None:
    check_values(model, path, raw, MAX_LOGPROBS)


def refused(model: ModelConfig, path: str, raw: dict[str, Any]) -> APIError:
    with pytest.raises(APIError) as caught:
        check(model, path, raw)
    assert (caught.value.status, caught.value.code) == (400, "invalid_value")
    return caught.value


@pytest.mark.parametrize("field", ["top_logprobs", "n_probs"])
def test_more_logprobs_than_the_cap_is_a_400_naming_the_field(field: str) -> None:
    assert refused(LLAMA, CHAT, {field: 49152}).param == field


def test_the_logprobs_cap_itself_is_accepted() -> None:
    check(LLAMA, CHAT, {"top_logprobs": MAX_LOGPROBS, "logprobs": True})


def test_the_cap_is_the_configured_one() -> None:
    check_values(LLAMA, CHAT, {"top_logprobs": 500}, max_logprobs=500)


def test_a_completions_integer_logprobs_is_capped_too() -> None:
    assert refused(LLAMA, "/v1/completions", {"logprobs": 21}).param == "logprobs"


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens", "max_output_tokens", "n_predict"])
def test_more_tokens_than_the_models_context_is_a_400(field: str) -> None:
    error = refused(LLAMA, CHAT, {field: 4294967300})
    assert error.param == field and "2048" in error.message


def test_the_context_itself_is_accepted() -> None:
    check(LLAMA, CHAT, {"max_tokens": 2048})


def test_a_model_of_unknown_context_is_bounded_by_32_bits() -> None:
    check(REMOTE, CHAT, {"max_tokens": INT32_MAX})
    assert refused(REMOTE, CHAT, {"max_tokens": INT32_MAX + 1}).param == "max_tokens"


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ("x", "tools"),
        ([{"x": 1}], "tools[0].type"),
        ([5], "tools[0].type"),
        ([{"type": "function"}], "tools[0].function.name"),
        ([{"type": "function", "function": {}}], "tools[0].function.name"),
        (
            [{"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": 5}}],
            "tools[1].function.name",
        ),
    ],
)
@pytest.mark.parametrize("path", [CHAT, "/apply-template"])
def test_a_malformed_tool_is_a_400_naming_it(path: str, tools: Any, param: str) -> None:
    assert refused(LLAMA, path, {"tools": tools}).param == param


def test_a_well_formed_tool_list_is_accepted() -> None:
    check(LLAMA, CHAT, {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]})


@pytest.mark.parametrize("tokens", [[-1], [1, 2.5], ["a"], [True], 5])
def test_detokenize_takes_token_ids_only(tokens: Any) -> None:
    assert refused(LLAMA, "/detokenize", {"tokens": tokens}).param == "tokens"
