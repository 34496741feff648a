"""The runtime's OpenAI-shaped (or /infill) answers become Ollama's objects and NDJSON lines.

The chunks are llama-server's, as recorded from its /v1/chat/completions, /v1/completions and
/infill (tool-call deltas in the OpenAI streaming format it follows)."""

from __future__ import annotations

import json
import time
from typing import Any

from inference_service.router.api.ollama.replies import NDJSONFrames, OllamaReply
from inference_service.router.api.ollama.requests import Source

TIMINGS = {"prompt_n": 32, "prompt_ms": 40.0, "predicted_n": 3, "predicted_ms": 60.0}
USAGE = {"completion_tokens": 3, "prompt_tokens": 32, "total_tokens": 35}


def sse(*payloads: Any) -> bytes:
    return b"".join(b"data: " + (p if isinstance(p, bytes) else json.dumps(p).encode()) + b"\n\n" for p in payloads)


def delta(content: str | None = None, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    part = {"content": content, **fields} if content is not None or fields else {}
    return {"choices": [{"index": 0, "delta": part, "finish_reason": finish}], "object": "chat.completion.chunk"}


CHAT_STREAM = sse(
    delta(None, role="assistant"),
    delta("I"),
    delta("'m"),
    delta(finish="length"),
    {"choices": [], "usage": USAGE, "timings": TIMINGS},
    b"[DONE]",
)


def lines(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def reply(source: Source = Source.CHAT, chat: bool = True, started: float | None = None) -> OllamaReply:
    return OllamaReply(source, chat, "smol:latest", time.perf_counter() if started is None else started)


def test_a_chat_stream_is_one_line_per_token_then_the_done_line_with_the_runtimes_counts_and_timings() -> None:
    objects = lines(NDJSONFrames(reply(started=time.perf_counter() - 1.0))(CHAT_STREAM))
    assert [o["message"]["content"] for o in objects] == ["I", "'m", ""]
    assert [o["done"] for o in objects] == [False, False, True]
    assert all(o["model"] == "smol:latest" and o["created_at"].endswith("Z") for o in objects)
    done = objects[-1]
    assert done["done_reason"] == "length"
    assert (done["prompt_eval_count"], done["eval_count"]) == (32, 3)
    assert (done["prompt_eval_duration"], done["eval_duration"]) == (40_000_000, 60_000_000)
    assert done["load_duration"] == done["total_duration"] - 100_000_000 > 800_000_000


def test_runs_of_events_are_reframed_as_they_come_and_nothing_follows_the_done_line() -> None:
    frames = NDJSONFrames(reply())
    first, rest = CHAT_STREAM[: CHAT_STREAM.index(b"data: {", 10)], CHAT_STREAM[CHAT_STREAM.index(b"data: {", 10) :]
    assert frames(first) == b""  # the role-only chunk carries no text
    assert [o["done"] for o in lines(frames(rest))][-1] is True
    assert frames(sse(delta("late"))) == b""


def test_streamed_tool_call_parts_become_one_complete_ollama_tool_call() -> None:
    call_start = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    stream = sse(
        delta(None, role="assistant"),
        delta(None, tool_calls=[call_start]),
        delta(None, tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
        delta(None, tool_calls=[{"index": 0, "function": {"arguments": ' "Oslo"}'}}]),
        delta(finish="tool_calls"),
        b"[DONE]",
    )
    objects = lines(NDJSONFrames(reply())(stream))
    calls = [o["message"]["tool_calls"] for o in objects if "tool_calls" in o["message"]]
    assert calls == [[{"id": "call_1", "function": {"index": 0, "name": "weather", "arguments": {"city": "Oslo"}}}]]
    assert objects[-1]["done"] is True and objects[-1]["done_reason"] == "stop"


def test_reasoning_content_is_ollamas_thinking() -> None:
    objects = lines(NDJSONFrames(reply())(sse(delta(None, reasoning_content="hmm"), delta("42"), b"[DONE]")))
    assert [(o["message"].get("thinking"), o["message"]["content"]) for o in objects[:2]] == [("hmm", ""), (None, "42")]


def test_an_error_event_becomes_an_error_line_and_ends_the_stream() -> None:
    frames = NDJSONFrames(reply())
    objects = lines(frames(sse(delta("a"), {"error": {"code": 500, "message": "slot crashed"}}, b"[DONE]")))
    assert objects == [objects[0], {"error": "slot crashed"}]
    assert frames(sse(delta("b"), b"[DONE]")) == b""


def test_a_generate_stream_answers_in_response_fields() -> None:
    completion = {"choices": [{"text": "-by", "index": 0, "finish_reason": None}]}
    last = {"choices": [{"text": "", "index": 0, "finish_reason": "stop"}], "usage": USAGE}
    objects = lines(NDJSONFrames(reply(Source.COMPLETION, chat=False))(sse(completion, last, b"[DONE]")))
    assert [(o["response"], o["done"]) for o in objects] == [("-by", False), ("", True)]
    assert "message" not in objects[0] and objects[-1]["eval_count"] == 3


def test_an_infill_stream_ends_at_its_stop_chunk_with_the_done_line() -> None:
    chunks = sse(
        {"content": "x", "stop": False},
        {"content": "", "stop": True, "stop_type": "limit", "tokens_predicted": 3, "tokens_evaluated": 9},
    )
    objects = lines(NDJSONFrames(reply(Source.INFILL, chat=False))(chunks))
    assert [(o["response"], o["done"]) for o in objects] == [("x", False), ("", True)]
    assert objects[-1]["done_reason"] == "length" and objects[-1]["prompt_eval_count"] == 9


def test_a_whole_chat_reply_is_one_done_object_with_parsed_tool_call_arguments() -> None:
    tool_call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    answer = reply().whole(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "", "tool_calls": [tool_call]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": USAGE,
            "timings": TIMINGS,
        }
    )
    assert answer["message"] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "c", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}],
    }
    assert answer["done"] is True and answer["done_reason"] == "stop" and answer["eval_count"] == 3


def test_arguments_that_are_no_json_object_are_kept_whole() -> None:
    tool_call = {"function": {"name": "f", "arguments": "not json"}}
    answer = reply().whole({"choices": [{"message": {"tool_calls": [tool_call]}, "finish_reason": "tool_calls"}]})
    assert answer["message"]["tool_calls"][0]["function"]["arguments"] == {"arguments": "not json"}


def test_without_runtime_timings_the_durations_are_measured_and_add_up() -> None:
    answer = reply(Source.COMPLETION, chat=False, started=time.perf_counter() - 0.5).whole(
        {"choices": [{"text": "t", "finish_reason": "stop"}]}
    )
    assert answer["response"] == "t" and answer["eval_duration"] >= 500_000_000
    assert (
        answer["total_duration"] == answer["load_duration"] + answer["prompt_eval_duration"] + answer["eval_duration"]
    )
