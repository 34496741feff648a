"""What spans say about requests and replies: GenAI operation names, the parameters asked for, finish
reasons read from reply bytes, and - opted in - the messages, in the conventions' shapes."""

from __future__ import annotations

import json

import pytest

from inference_service.router.observability.tracing.attributes import (
    finish_reasons,
    operation,
    request_attributes,
    usage_attributes,
)
from inference_service.router.observability.tracing.content import input_attributes, output_attributes


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("/v1/chat/completions", "chat"),
        ("chat/completions:orchestrated", "chat"),
        ("messages", "chat"),
        ("api/generate", "text_completion"),
        ("/v1/completions", "text_completion"),
        ("api/embed", "embeddings"),
        ("/v1/rerank", "rerank"),
    ],
)
def test_operation_names_follow_the_conventions_and_keep_an_unknown_endpoints_own(endpoint: str, name: str) -> None:
    assert operation(endpoint) == name


def test_request_attributes_are_what_the_client_set() -> None:
    body = {"model": "m", "max_completion_tokens": 9, "temperature": 1, "top_p": 0.5, "seed": 3, "stop": "\n"}
    assert request_attributes({**body, "stream": True}) == {
        "gen_ai.request.model": "m",
        "gen_ai.request.max_tokens": 9,
        "gen_ai.request.temperature": 1.0,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.seed": 3,
        "gen_ai.request.stream": True,
        "gen_ai.request.stop_sequences": ["\n"],
    }


def test_request_attributes_leave_out_what_is_absent_or_not_a_number() -> None:
    assert request_attributes({"temperature": True, "max_tokens": "many", "stream": False}) == {}


def test_finish_reasons_are_read_in_order_from_openai_and_anthropic_replies() -> None:
    reply = b'{"choices":[{"finish_reason":"stop"},{"finish_reason": "length"}]}\n{"stop_reason":"end_turn"}'
    assert finish_reasons(reply) == ["stop", "length", "end_turn"]


def test_a_finish_reason_inside_generated_text_is_not_one() -> None:
    reply = json.dumps({"choices": [{"message": {"content": 'say "finish_reason":"stop"'}, "finish_reason": None}]})
    assert finish_reasons(reply.encode()) == []


def test_usage_attributes_take_either_apis_names() -> None:
    assert usage_attributes({"prompt_tokens": 3, "completion_tokens": 4}) == usage_attributes(
        {"input_tokens": 3, "output_tokens": 4}
    )
    assert usage_attributes({"input_tokens": 3, "output_tokens": None}) == {"gen_ai.usage.input_tokens": 3}


def test_chat_messages_become_the_conventions_input_messages() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ]
    }
    assert json.loads(input_attributes(body)["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Look:"}, {"type": "image_url"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": "{}"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "42"}]},
    ]


def test_anthropics_system_is_the_system_instructions() -> None:
    attributes = input_attributes({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
    assert json.loads(attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "Be brief."}]


def test_a_completion_prompt_is_one_user_message() -> None:
    assert json.loads(input_attributes({"prompt": "Once"})["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Once"}]}
    ]


@pytest.mark.parametrize(
    "reply",
    [
        {"choices": [{"message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}]},
        {"content": [{"type": "text", "text": "Hi!"}], "stop_reason": "stop"},
        {
            "status": "stop",
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]}],
        },
    ],
    ids=["openai", "anthropic", "responses"],
)
def test_a_replys_answer_becomes_the_conventions_output_messages(reply: dict[str, object]) -> None:
    assert json.loads(output_attributes(json.dumps(reply).encode())["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [{"type": "text", "content": "Hi!"}], "finish_reason": "stop"}
    ]


def test_a_reply_that_is_not_json_has_no_output_messages() -> None:
    assert output_attributes(b"<html>bad gateway</html>") == {}
