"""Reading a non-streamed reply's top-level ``usage`` from its bytes, without parsing the reply."""

from __future__ import annotations

import json
from typing import Any

from inference_service.router.proxy.usage import usage_of

USAGE = {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29, "prompt_tokens_details": {"cached_tokens": 0}}


def _reply(**fields: Any) -> bytes:
    """A llama-server chat reply: choices (with logprobs) first, usage near the end, then id and timings."""
    logprobs = {
        "content": [{"token": "usage", "logprob": -1.0, "top_logprobs": [{"token": '"usage": {}', "logprob": -2.0}]}]
    }
    reply = {
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": 'say "usage": {"prompt_tokens": 1}'},
                "logprobs": logprobs,
            }
        ],
        "object": "chat.completion",
        **fields,
    }
    return json.dumps(reply, ensure_ascii=False).encode()


def test_the_top_level_usage_is_found_behind_the_choices() -> None:
    assert usage_of(_reply(usage=USAGE, id="chatcmpl-1", timings={"predicted_n": 20})) == USAGE


def test_pretty_printed_usage_is_found() -> None:
    body = json.dumps({"choices": [], "usage": USAGE}, indent=2).encode()
    assert usage_of(body) == USAGE


def test_a_reply_without_usage_has_none() -> None:
    assert usage_of(_reply(id="chatcmpl-1")) is None


def test_usage_as_a_string_value_is_not_taken_for_the_object() -> None:
    assert usage_of(json.dumps({"choices": [], "usage": USAGE, "object": "usage"}).encode()) == USAGE


def test_a_key_ending_in_an_escaped_quote_and_usage_is_not_the_usage_key() -> None:
    body = json.dumps({"usage": USAGE, 'tricky"usage': {"prompt_tokens": 1}}).encode()
    assert usage_of(body) == USAGE


def test_a_truncated_usage_object_is_none() -> None:
    body = json.dumps({"choices": [], "usage": USAGE}).encode()
    assert usage_of(body[:-10]) is None
