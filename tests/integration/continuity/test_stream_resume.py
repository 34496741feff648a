"""Streams that survive their runtime: llama-server SIGKILLed mid-answer, the client sees one answer.

One router for the module: SmolLM2, greedy (temperature 0), so the answer a stream would have
given uninterrupted is known - each API's is read once, unkilled, and every resumed answer must
equal it: nothing repeated (llama-server repeats the prefilled text first), nothing missing.
Its ``resume_replay_max_tokens`` is 0, so every stream is continued from its text, as a sampled
one is (replays: test_stream_replay.py). The
child is killed by its pid from ``/v1/models/{id}`` after a few text deltas; the supervisor
restarts it and the router continues the stream there.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.continuity.conftest import StartService
from tests.support.api import child_headers, model_card
from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.killed_streams import (
    CHAT,
    MESSAGES,
    RESPONSES,
    TIMEOUT_S,
    ReadStream,
    kill_model,
    stream_killing_the_model,
)
from tests.support.killed_streams import resumes as resume_count
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

MAX_TOKENS = 48
KILL_AFTER = 8  # text deltas: well into the answer, well before its end
PROMPT = "Write a story about a cat."
MESSAGES_IN = [{"role": "user", "content": PROMPT}]
BODIES: dict[str, dict[str, Any]] = {
    CHAT: {"messages": MESSAGES_IN, "max_tokens": MAX_TOKENS, "stream_options": {"include_usage": True}},
    MESSAGES: {"messages": MESSAGES_IN, "max_tokens": MAX_TOKENS},
    RESPONSES: {"input": PROMPT, "max_output_tokens": MAX_TOKENS},
}


def body(path: str, model_id: str = SMOLLM2_ID, **extra: Any) -> dict[str, Any]:
    return {"model": model_id, "temperature": 0, "stream": True, **BODIES[path], **extra}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("resume")
    # Every test kills the child: a streak of crashes that the default 5 restarts would end `failed`.
    models = {SMOLLM2_ID: smollm2(preload=True, ctx_size=1024)}
    config = write_config(directory / "config.toml", models, restart_max_attempts=20, resume_replay_max_tokens=0)
    with running_service(config, directory / "logs") as running:
        yield running


@pytest.fixture(scope="module")
def uninterrupted(service: ServiceProcess) -> dict[str, str]:
    """Each API's greedy answer, streamed without a kill."""
    answers = {}
    for path in BODIES:
        read = stream_killing_the_model(service, SMOLLM2_ID, path, body(path), kill_after=None)
        assert read.status == 200 and not read.errors, read.events
        answers[path] = read.text
    return answers


def resumes(service: ServiceProcess, outcome: str) -> float:
    return resume_count(service, outcome, SMOLLM2_ID)


def killed_and_resumed(service: ServiceProcess, path: str) -> ReadStream:
    """A stream of ``path`` killed after KILL_AFTER deltas, checked to have no error event and to have been resumed once."""
    before = resumes(service, "resumed")
    read = stream_killing_the_model(service, SMOLLM2_ID, path, body(path), kill_after=KILL_AFTER)
    assert read.killed_pid is not None, "the answer ended before the kill"
    assert read.errors == []
    assert resumes(service, "resumed") == before + 1
    return read


def test_chat_stream_killed_mid_answer_is_one_complete_stream(
    service: ServiceProcess, uninterrupted: dict[str, str]
) -> None:
    read = killed_and_resumed(service, CHAT)

    assert [data for _, data in read.events].count("[DONE]") == 1 and read.events[-1][1] == "[DONE]"
    assert read.text == uninterrupted[CHAT]
    chunks = read.payloads()
    assert {chunk["id"] for chunk in chunks} == {chunks[0]["id"]}  # one stream, one id
    assert sum("role" in (chunk["choices"] or [{}])[0].get("delta", {}) for chunk in chunks) == 1
    finishing = [choice["finish_reason"] for chunk in chunks for choice in chunk["choices"] if choice["finish_reason"]]
    assert finishing == ["length"]
    assert chunks[-1]["usage"]["completion_tokens"] == MAX_TOKENS  # the whole answer, both parts


def test_anthropic_stream_killed_mid_answer_is_one_complete_stream(
    service: ServiceProcess, uninterrupted: dict[str, str]
) -> None:
    read = killed_and_resumed(service, MESSAGES)

    assert read.text == uninterrupted[MESSAGES]
    assert read.names.count("message_start") == 1 and read.names.count("content_block_start") == 1
    assert read.names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    (delta,) = read.payloads("message_delta")
    assert delta["usage"]["output_tokens"] == MAX_TOKENS
    assert delta["delta"]["stop_reason"] == "max_tokens"


def test_responses_stream_killed_mid_answer_is_one_complete_stream(
    service: ServiceProcess, uninterrupted: dict[str, str]
) -> None:
    read = killed_and_resumed(service, RESPONSES)

    assert read.text == uninterrupted[RESPONSES]
    assert read.names.count("response.created") == 1 and read.names.count("response.output_item.added") == 1
    (completed,) = read.payloads("response.completed")
    assert completed["response"]["output"][0]["content"][0]["text"] == uninterrupted[RESPONSES]
    assert completed["response"]["usage"]["output_tokens"] == MAX_TOKENS
    (created,) = read.payloads("response.created")
    assert completed["response"]["id"] == created["response"]["id"]  # the first stream's ids throughout
    item_ids = {payload["item_id"] for payload in read.payloads("response.output_text.delta")}
    assert item_ids == {read.payloads("response.output_item.added")[0]["item"]["id"]}


def test_orchestrated_stream_whose_final_stage_is_killed_mid_answer_is_one_complete_stream(
    service: ServiceProcess,
) -> None:
    request = body(CHAT, orchestration_mode="single")
    reference = stream_killing_the_model(service, SMOLLM2_ID, CHAT, request, kill_after=None)
    before = resumes(service, "resumed")

    read = stream_killing_the_model(service, SMOLLM2_ID, CHAT, request, kill_after=KILL_AFTER)

    assert read.killed_pid is not None
    assert read.errors == []
    assert read.text == reference.text
    assert read.events[-1][1] == "[DONE]"
    assert read.payloads()[-1]["usage"]["completion_tokens"] == MAX_TOKENS
    assert resumes(service, "resumed") == before + 1


def test_a_resumed_request_is_noted_in_its_access_line(service: ServiceProcess) -> None:
    read = killed_and_resumed(service, CHAT)

    request_id = read.headers["x-request-id"]
    line = wait_until(
        lambda: next((line for line in service.log().splitlines() if request_id in line and "access" in line), ""),
        timeout_s=10,
    )
    assert "resumes=1" in line


def decoding(service: ServiceProcess, at_least: int) -> bool:
    """Whether a slot of the model's llama-server is generating and has decoded ``at_least`` tokens."""
    card = model_card(service, SMOLLM2_ID)
    if card["status"] != "loaded":
        return False
    slots = httpx.get(f"http://127.0.0.1:{card['port']}/slots", headers=child_headers(service, SMOLLM2_ID)).json()
    return any(slot["is_processing"] and slot["next_token"][0]["n_decoded"] >= at_least for slot in slots)


def test_non_streamed_request_whose_runtime_died_mid_answer_gets_one_answer(
    service: ServiceProcess, uninterrupted: dict[str, str]
) -> None:
    request = {**body(CHAT), "stream": False}
    request.pop("stream_options")
    before = resumes(service, "resumed")
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(httpx.post, f"{service.url}{CHAT}", json=request, timeout=TIMEOUT_S)
        wait_until(lambda: decoding(service, at_least=KILL_AFTER), timeout_s=TIMEOUT_S)
        kill_model(service, SMOLLM2_ID)
        response = pending.result()

    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == uninterrupted[CHAT]
    assert response.json()["usage"]["completion_tokens"] == MAX_TOKENS
    assert resumes(service, "resumed") == before + 1


@pytest.mark.parametrize(
    ("extra", "reason"),
    [({"logprobs": True}, "logprobs"), ({"n": 2}, "n > 1")],
    ids=["logprobs", "n=2"],
)
def test_a_stream_that_cannot_be_continued_honestly_ends_with_an_error_event(
    service: ServiceProcess, extra: dict[str, Any], reason: str
) -> None:
    before = resumes(service, "not_resumable")
    read = stream_killing_the_model(service, SMOLLM2_ID, CHAT, body(CHAT, **extra), kill_after=KILL_AFTER)

    assert read.killed_pid is not None
    (error,) = read.errors
    assert "upstream_died" in error and f"not resumed: {reason}" in error
    assert read.events[-1][1] == "[DONE]"
    assert resumes(service, "not_resumable") == before + 1


def test_stream_continues_on_the_fallback_when_its_model_is_given_up(
    start_service: StartService, tmp_path: Path
) -> None:
    fallback = "smollm2-fallback"
    models = {SMOLLM2_ID: smollm2(preload=True, fallbacks=[fallback]), fallback: smollm2()}
    service = start_service(models, restart_max_attempts=0)  # a crash is final: the fallback must continue
    reference = stream_killing_the_model(service, SMOLLM2_ID, CHAT, body(CHAT), kill_after=None)

    read = stream_killing_the_model(service, SMOLLM2_ID, CHAT, body(CHAT), kill_after=KILL_AFTER)

    assert read.killed_pid is not None
    assert read.errors == []
    assert read.text == reference.text  # the same weights, greedy: the same answer
    assert read.payloads()[-1]["usage"]["completion_tokens"] == MAX_TOKENS
    assert model_card(service, SMOLLM2_ID)["status"] == "failed"
    assert model_card(service, fallback)["status"] == "loaded"  # loaded by the continuation: nothing else asked
    assert resumes(service, "resumed") == 1


def test_with_resume_streams_off_a_killed_stream_ends_with_an_error_event_as_before(
    start_service: StartService,
) -> None:
    service = start_service({SMOLLM2_ID: smollm2(preload=True)}, resume_streams=False)

    read = stream_killing_the_model(service, SMOLLM2_ID, CHAT, body(CHAT), kill_after=KILL_AFTER)

    assert read.killed_pid is not None
    (error,) = read.errors
    assert "upstream_died" in error and "not resumed" not in error
    assert read.events[-1][1] == "[DONE]"
    assert resumes(service, "resumed") == resumes(service, "not_resumable") == 0
