"""How each API's stream is continued: what is read from the events sent, the request that continues
them, and the continuation's events rewritten - on events as llama-server sends them.

The paths through a real kill are tests/integration/continuity/test_stream_resume.py; here are
the cases a tiny model cannot be made to produce on demand (tool calls, a split repeat).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from inference_service.router.proxy.resume.continuations import (
    KEEPALIVE,
    ChatContinuation,
    MessagesContinuation,
    NotResumable,
    Progress,
    ResponsesContinuation,
    Resumed,
    progress_of,
    rewritten,
    shift_usage,
)
from inference_service.router.proxy.resume.echo import Diverged, Echo, Replay


def chunk(delta: dict[str, Any], finish_reason: str | None = None, id: str = "chatcmpl-first") -> bytes:
    payload = {"choices": [{"finish_reason": finish_reason, "index": 0, "delta": delta}], "created": 1, "id": id}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def named(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()


async def blocks(*runs: bytes) -> AsyncIterator[bytes]:
    for run in runs:
        yield run


async def rewrite_all(continuation: Any, resumed: Resumed, *runs: bytes) -> list[bytes]:
    return [run async for run in rewritten(continuation, blocks(*runs), resumed, lambda usage: None)]


SENT_CHAT = [chunk({"role": "assistant", "content": None}), chunk({"content": "The"}) + chunk({"content": " cat"})]


def test_the_chat_text_sent_so_far_becomes_a_final_assistant_message_with_fewer_tokens_left() -> None:
    continuation = ChatContinuation()
    progress = progress_of(continuation, SENT_CHAT)
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}

    assert continuation.request(body, progress) == {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "The cat"}],
        "max_tokens": 8,
    }


async def test_the_repeated_prefix_and_role_chunk_of_a_chat_continuation_are_dropped_and_its_id_is_the_first() -> None:
    continuation = ChatContinuation()
    progress = progress_of(continuation, SENT_CHAT)
    resumed = Resumed(progress, Echo(progress.text), progress.tokens)

    runs = await rewrite_all(
        continuation,
        resumed,
        chunk({"role": "assistant", "content": None}, id="chatcmpl-second"),
        chunk({"content": "The cat was"}, id="chatcmpl-second"),
    )

    (only,) = runs
    payload = json.loads(only.removeprefix(b"data: "))
    assert payload["id"] == "chatcmpl-first"
    assert payload["choices"][0]["delta"] == {"content": " was"}


def test_usage_of_a_continuation_counts_the_tokens_before_it_as_completion() -> None:
    usage = {"prompt_tokens": 44, "completion_tokens": 10, "total_tokens": 54}
    shift_usage(usage, 7)
    assert usage == {"prompt_tokens": 37, "completion_tokens": 17, "total_tokens": 54}


async def test_a_chat_replay_is_relayed_from_the_cut_with_its_own_usage() -> None:
    continuation = ChatContinuation()
    progress = progress_of(continuation, SENT_CHAT)
    resumed = Resumed(progress, Replay(progress.text), 0)
    usage = {"prompt_tokens": 30, "completion_tokens": 4, "total_tokens": 34}

    runs = await rewrite_all(
        continuation,
        resumed,
        chunk({"role": "assistant", "content": None}, id="chatcmpl-second"),
        chunk({"content": "The"}, id="chatcmpl-second") + chunk({"content": " cat"}, id="chatcmpl-second"),
        chunk({"content": " sat"}, id="chatcmpl-second"),
        chunk({}, finish_reason="length", id="chatcmpl-second") + b"data: " + json.dumps({"usage": usage}).encode(),
    )

    payloads = [json.loads(event.removeprefix(b"data: ")) for run in runs for event in run.split(b"\n\n") if event]
    assert [p["choices"][0]["delta"] for p in payloads if p.get("choices")] == [{"content": " sat"}, {}]
    assert payloads[-1]["usage"] == usage  # the replay generated the whole answer: nothing shifted


@pytest.mark.parametrize(("keepalive_s", "comments"), [(0.0, 2), (3600.0, 0)], ids=["quiet too long", "not yet"])
async def test_a_replay_regenerating_the_text_sent_keeps_the_stream_alive_with_comments(
    keepalive_s: float, comments: int
) -> None:
    continuation = ChatContinuation()
    progress = progress_of(continuation, SENT_CHAT)
    replaying = (chunk({"content": "The"}, id="chatcmpl-second"), chunk({"content": " cat"}, id="chatcmpl-second"))

    runs = [
        run
        async for run in rewritten(
            continuation,
            blocks(*replaying, chunk({"content": " sat"}, id="chatcmpl-second")),
            Resumed(progress, Replay(progress.text), 0),
            lambda usage: None,
            keepalive_s,
        )
    ]

    assert runs[:-1] == [KEEPALIVE] * comments
    assert json.loads(runs[-1].removeprefix(b"data: "))["choices"][0]["delta"] == {"content": " sat"}


async def test_a_chat_replay_that_ends_before_the_cut_diverges() -> None:
    continuation = ChatContinuation()
    progress = progress_of(continuation, SENT_CHAT)

    with pytest.raises(Diverged, match="ended"):
        await rewrite_all(
            continuation,
            Resumed(progress, Replay(progress.text), 0),
            chunk({"content": "The"}, id="chatcmpl-second"),
            chunk({}, finish_reason="stop", id="chatcmpl-second"),
        )


@pytest.mark.parametrize(
    ("continuation", "ending"),
    [
        (MessagesContinuation(), named("message_delta", {"delta": {"stop_reason": "end_turn"}})),
        (ResponsesContinuation(), named("response.completed", {"response": {"id": "resp_second"}})),
    ],
    ids=["anthropic", "responses"],
)
async def test_a_replay_of_a_named_event_stream_that_ends_before_the_cut_diverges(
    continuation: Any, ending: bytes
) -> None:
    progress = Progress(pieces=["The", " cat"])

    with pytest.raises(Diverged, match="ended"):
        await rewrite_all(continuation, Resumed(progress, Replay(progress.text), 0), ending)


@pytest.mark.parametrize(
    "sent",
    [
        chunk({"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"reasoning_content": "Let me think"}),
        chunk({}, finish_reason="stop"),
    ],
    ids=["tool-call delta", "reasoning delta", "finished"],
)
def test_a_chat_stream_is_not_continued_past_what_a_prefill_cannot_carry(sent: bytes) -> None:
    with pytest.raises(NotResumable):
        progress_of(ChatContinuation(), [SENT_CHAT[0], sent])


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "Hi"}], "n": 2},
        {"messages": [{"role": "user", "content": "Hi"}], "logprobs": True},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Well"}]},
    ],
    ids=["n=2", "logprobs", "its own prefill"],
)
def test_a_chat_request_that_cannot_be_continued_is_refused_before_anything_is_sent(body: dict[str, Any]) -> None:
    with pytest.raises(NotResumable):
        ChatContinuation().check(body)


def test_an_anthropic_stream_with_a_tool_use_block_is_not_continued() -> None:
    sent = [
        named("message_start", {"message": {"id": "msg_1"}}),
        named("content_block_start", {"index": 0, "content_block": {"type": "tool_use"}}),
    ]
    with pytest.raises(NotResumable, match="tool_use"):
        progress_of(MessagesContinuation(), sent)


def test_a_responses_stream_with_a_function_call_item_is_not_continued() -> None:
    sent = [
        named("response.created", {"response": {"id": "resp_1"}}),
        named("response.output_item.added", {"item": {"type": "function_call", "id": "fc_1"}}),
    ]
    with pytest.raises(NotResumable, match="function_call"):
        progress_of(ResponsesContinuation(), sent)


async def test_a_responses_continuation_carries_the_first_streams_ids_and_whole_usage() -> None:
    continuation = ResponsesContinuation()
    sent = [
        named("response.created", {"response": {"id": "resp_first"}}),
        named("response.output_item.added", {"item": {"type": "message", "id": "msg_first"}}),
        named("response.output_text.delta", {"item_id": "msg_first", "delta": "The"}),
    ]
    progress = progress_of(continuation, sent)
    resumed = Resumed(progress, Echo(progress.text), progress.tokens)
    completed = {"response": {"id": "resp_second", "usage": {"input_tokens": 38, "output_tokens": 5}}}

    runs = await rewrite_all(
        continuation,
        resumed,
        named("response.created", {"response": {"id": "resp_second"}}),
        named("response.output_item.added", {"item": {"type": "message", "id": "msg_second"}}),
        named("response.output_text.delta", {"item_id": "msg_second", "delta": "The cat"}),
        named("response.completed", completed),
    )

    text = b"".join(runs).decode()
    assert "resp_second" not in text and "msg_second" not in text
    assert [line for line in text.splitlines() if line.startswith("event:")] == [
        "event: response.output_text.delta",
        "event: response.completed",
    ]
    assert '"delta":" cat"' in text
    assert '"usage":{"input_tokens":37,"output_tokens":6}' in text
