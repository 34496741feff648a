"""Ollama requests become the internal OpenAI (or /infill) request - or a 400 that says why."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from inference_service.router.api.ollama.requests import (
    LOAD_TIME_OPTIONS,
    SAMPLING_OPTIONS,
    UNSUPPORTED_OPTIONS,
    Source,
    chat_call,
    generate_call,
    keep_alive_s,
    openai_messages,
    sampling_fields,
)
from inference_service.router.api.ollama.schemas import (
    OllamaChatRequest,
    OllamaGenerateRequest,
    OllamaMessage,
    OllamaOptions,
)
from inference_service.router.serving.errors import APIError

HI = [{"role": "user", "content": "hi"}]
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def chat(**fields: Any) -> OllamaChatRequest:
    return OllamaChatRequest.model_validate({"model": "m", "messages": HI, **fields})


def generate(**fields: Any) -> OllamaGenerateRequest:
    return OllamaGenerateRequest.model_validate({"model": "m", "prompt": "p", **fields})


@pytest.mark.parametrize(("option", "field"), SAMPLING_OPTIONS.items())
def test_each_sampling_option_becomes_its_body_field(option: str, field: str) -> None:
    value: Any = ["\n"] if option == "stop" else 1
    assert sampling_fields(OllamaOptions.model_validate({option: value})) == {field: value}


@pytest.mark.parametrize(("num_predict", "fields"), [(7, {"max_tokens": 7}), (-1, {}), (-2, {})])
def test_num_predict_is_max_tokens_and_its_no_limit_values_leave_the_runtimes_limit(
    num_predict: int, fields: dict[str, int]
) -> None:
    assert sampling_fields(OllamaOptions(num_predict=num_predict)) == fields


def test_num_predict_zero_is_refused() -> None:
    with pytest.raises(APIError, match="num_predict must be positive"):
        sampling_fields(OllamaOptions(num_predict=0))


def test_num_ctx_is_accepted_and_left_to_the_models_ctx_size() -> None:
    assert sampling_fields(OllamaOptions(num_ctx=8192)) == {}


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        *((name, "load-time setting") for name in sorted(LOAD_TIME_OPTIONS)),
        *((name, "not supported") for name in UNSUPPORTED_OPTIONS),
        ("no_such_option", "unknown option"),
    ],
)
def test_an_option_that_cannot_be_honoured_is_refused_by_name(option: str, reason: str) -> None:
    with pytest.raises(APIError) as refused:
        sampling_fields(OllamaOptions.model_validate({option: 1}))
    assert refused.value.status == 400
    assert option in refused.value.message and reason in refused.value.message
    assert refused.value.param == f"options.{option}"


@pytest.mark.parametrize(
    ("think", "fields"),
    [
        (True, {"chat_template_kwargs": {"enable_thinking": True}}),
        (False, {"reasoning_effort": "none", "chat_template_kwargs": {"enable_thinking": False}}),
        ("high", {"reasoning_effort": "high", "chat_template_kwargs": {"enable_thinking": True}}),
    ],
)
def test_think_switches_the_templates_thinking_and_the_reasoning_effort(think: Any, fields: dict[str, Any]) -> None:
    body = chat_call(chat(think=think)).body
    assert {key: body[key] for key in fields} == fields


def test_format_json_is_json_object_mode_and_a_schema_is_json_schema_mode() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert chat_call(chat(format="json")).body["response_format"] == {"type": "json_object"}
    assert chat_call(chat(format=schema)).body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "format", "schema": schema},
    }
    assert "response_format" not in chat_call(chat(format="")).body


def test_a_stream_asks_for_usage_and_a_single_answer_is_not_a_stream() -> None:
    streamed, single = chat_call(chat()), chat_call(chat(stream=False))
    assert streamed.body["stream"] is True and streamed.body["stream_options"] == {"include_usage": True}
    assert "stream" not in single.body and single.source is Source.CHAT


def test_no_tools_sends_no_tools_field() -> None:
    assert "tools" not in chat_call(chat(tools=[])).body


def test_tool_calls_get_ids_and_a_tool_result_names_the_call_it_answers() -> None:
    messages = openai_messages(
        [
            OllamaMessage(role="user", content="weather?"),
            OllamaMessage.model_validate(
                {"role": "assistant", "tool_calls": [{"function": {"name": "weather", "arguments": {"city": "Oslo"}}}]}
            ),
            OllamaMessage(role="tool", content="3 degrees", tool_name="weather"),
        ]
    )
    call = messages[1]["tool_calls"][0]
    assert call["type"] == "function" and call["function"]["name"] == "weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert messages[2] == {"role": "tool", "content": "3 degrees", "tool_call_id": call["id"], "name": "weather"}


def test_images_become_data_url_content_parts_after_the_text() -> None:
    (message,) = openai_messages([OllamaMessage(role="user", content="what is it?", images=[PNG])])
    assert message["content"] == [
        {"type": "text", "text": "what is it?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]


def test_an_image_that_is_not_base64_is_refused() -> None:
    with pytest.raises(APIError, match="base64"):
        openai_messages([OllamaMessage(role="user", content="x", images=["not base64!"])])


def test_generate_applies_the_chat_template_with_the_system_prompt() -> None:
    call = generate_call(generate(system="be brief", stream=False), model_chats=True)
    assert call.source is Source.CHAT
    assert call.body["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "p"}]


@pytest.mark.parametrize("fields", [{"raw": True}, {}])
def test_generate_raw_or_on_a_model_that_does_not_chat_completes_the_prompt_as_it_stands(
    fields: dict[str, Any],
) -> None:
    call = generate_call(generate(format="json", **fields), model_chats="raw" in fields)
    assert call.source is Source.COMPLETION
    assert call.body["prompt"] == "p" and call.body["json_schema"] == {}


def test_generate_with_a_suffix_fills_in_the_middle_through_infill() -> None:
    call = generate_call(generate(suffix="return x", options={"num_predict": 3}), model_chats=True)
    assert call.source is Source.INFILL
    assert call.body == {"input_prefix": "p", "input_suffix": "return x", "prompt": "", "max_tokens": 3, "stream": True}


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"template": "{{ .Prompt }}"}, "templates are not supported"),
        ({"context": [1, 2]}, "'context' is not supported"),
        ({"raw": True, "system": "s"}, "'system' needs the chat template"),
        ({"suffix": "x", "images": [PNG]}, "'images' needs the chat template"),
        ({"logprobs": True}, "logprobs are not supported"),
    ],
)
def test_generate_refuses_what_it_cannot_honour(fields: dict[str, Any], refused: str) -> None:
    with pytest.raises(APIError, match=refused):
        generate_call(generate(**fields), model_chats=True)


@pytest.mark.parametrize(
    ("keep_alive", "seconds"),
    [
        (None, None),
        (0, 0.0),
        ("0", 0.0),
        (300, 300.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
    ],
)
def test_keep_alive_is_seconds_or_a_go_duration(keep_alive: Any, seconds: float | None) -> None:
    assert keep_alive_s(keep_alive) == seconds


@pytest.mark.parametrize("keep_alive", [-1, "-1", "-5m", -0.5])
def test_a_negative_keep_alive_keeps_the_model_loaded_for_ever(keep_alive: Any) -> None:
    assert keep_alive_s(keep_alive) == math.inf


@pytest.mark.parametrize("keep_alive", ["soon", "5 minutes", "", "m5"])
def test_an_unreadable_keep_alive_is_refused(keep_alive: str) -> None:
    with pytest.raises(APIError, match="not a duration"):
        keep_alive_s(keep_alive)
