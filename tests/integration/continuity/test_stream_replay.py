"""Replayed streams: a greedy or seeded stream killed mid-answer is generated again and relayed from the cut.

SmolLM2's llama-server is SIGKILLed after a few text deltas, as in test_stream_resume.py, but
with the router's defaults: an answer that comes out the same every time is sent again as it
was, so the client gets the uninterrupted answer exactly - which llama-server's ``timings``
show was generated whole a second time (``predicted_n``), not continued from the cut. A
sampled stream is continued from its text; a replay on a fallback with other weights parts
from the text at once and is continued from it there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.continuity.conftest import StartService
from tests.support.api import model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, gemma, smollm2, write_config
from tests.support.killed_streams import (
    CHAT,
    MESSAGES,
    RESPONSES,
    ReadStream,
    resumes,
    stream_killing_the_model,
)
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

MAX_TOKENS = 48
KILL_AFTER = 8
PROMPT = "Write a story about a cat."
BODIES: dict[str, dict[str, Any]] = {
    CHAT: {
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "stream_options": {"include_usage": True},
    },
    MESSAGES: {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS},
    RESPONSES: {"input": PROMPT, "max_output_tokens": MAX_TOKENS},
}
GREEDY = {"temperature": 0}
SEEDED = {"temperature": 0.9, "seed": 7}


def body(path: str, sampling: dict[str, Any]) -> dict[str, Any]:
    return {"model": SMOLLM2_ID, "stream": True, **BODIES[path], **sampling}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory = tmp_path_factory.mktemp("replay")
    # Every test kills the child: a streak of crashes that the default 5 restarts would end `failed`.
    config = write_config(directory / "config.toml", {SMOLLM2_ID: smollm2(preload=True)}, restart_max_attempts=20)
    with running_service(config, directory / "logs") as running:
        yield running


def killed(service: ServiceProcess, path: str, request: dict[str, Any], model_id: str = SMOLLM2_ID) -> ReadStream:
    """The stream of ``request``, its model killed after KILL_AFTER text deltas; checked to have no error event."""
    read = stream_killing_the_model(service, model_id, path, request, kill_after=KILL_AFTER)
    assert read.killed_pid is not None, "the answer ended before the kill"
    assert read.errors == [], read.errors
    return read


def timings(read: ReadStream) -> dict[str, Any]:
    """llama-server's account of the call that ended the stream: what it read and generated."""
    (last,) = [payload["timings"] for payload in read.payloads() if "timings" in payload][-1:]
    assert isinstance(last, dict)
    return last


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_a_chat_stream_that_comes_out_the_same_every_time_is_replayed_to_its_uninterrupted_answer(
    service: ServiceProcess, sampling: dict[str, Any]
) -> None:
    request = body(CHAT, sampling)
    uninterrupted = stream_killing_the_model(service, SMOLLM2_ID, CHAT, request, kill_after=None)
    before = resumes(service, "resumed", SMOLLM2_ID), resumes(service, "diverged", SMOLLM2_ID)

    read = killed(service, CHAT, request)

    assert read.text == uninterrupted.text
    assert timings(read)["predicted_n"] == MAX_TOKENS  # generated whole again, not continued from the cut
    counts = ("prompt_tokens", "completion_tokens", "total_tokens")
    usage, uninterrupted_usage = read.payloads()[-1]["usage"], uninterrupted.payloads()[-1]["usage"]
    assert {key: usage[key] for key in counts} == {key: uninterrupted_usage[key] for key in counts}
    assert [data for _, data in read.events].count("[DONE]") == 1
    assert (resumes(service, "resumed", SMOLLM2_ID), resumes(service, "diverged", SMOLLM2_ID)) == (
        before[0] + 1,
        before[1],
    )


@pytest.mark.parametrize("path", [MESSAGES, RESPONSES], ids=["anthropic", "responses"])
def test_a_greedy_stream_of_another_api_is_replayed_to_its_uninterrupted_answer(
    service: ServiceProcess, path: str
) -> None:
    request = body(path, GREEDY)
    uninterrupted = stream_killing_the_model(service, SMOLLM2_ID, path, request, kill_after=None)

    read = killed(service, path, request)

    assert read.text == uninterrupted.text
    assert read.names == uninterrupted.names  # one opening, one ending: the replay's own are not sent twice


def test_a_sampled_chat_stream_is_continued_from_its_text_not_replayed(service: ServiceProcess) -> None:
    read = killed(service, CHAT, body(CHAT, {"temperature": 0.9}))

    assert read.text.startswith(read.text_at_kill)
    generated_again = timings(read)["predicted_n"]
    assert generated_again <= MAX_TOKENS - KILL_AFTER  # only the rest was generated
    # The usage is the whole answer's: the tokens sent before the cut - the client had read KILL_AFTER
    # of them when the kill came, and more may have been on their way (on a busy machine, often) -
    # and the continuation's, counted once.
    completion_tokens = read.payloads()[-1]["usage"]["completion_tokens"]
    assert completion_tokens - generated_again >= KILL_AFTER
    assert completion_tokens <= MAX_TOKENS


def test_a_replay_that_parts_from_the_text_on_a_fallback_is_continued_from_the_text(
    start_service: StartService, tmp_path: Path
) -> None:
    models = {SMOLLM2_ID: smollm2(preload=True, fallbacks=[GEMMA_ID]), GEMMA_ID: gemma(ctx_size=1024)}
    service = start_service(models, restart_max_attempts=0)  # a crash is final: gemma, other weights, takes over

    read = killed(service, CHAT, body(CHAT, GREEDY))

    assert read.text.startswith(read.text_at_kill) and len(read.text) > len(read.text_at_kill)
    assert timings(read)["predicted_n"] <= MAX_TOKENS - KILL_AFTER  # the continuation, after the replay was dropped
    assert [data for _, data in read.events].count("[DONE]") == 1
    assert model_card(service, GEMMA_ID)["status"] == "loaded"
    assert (resumes(service, "resumed", SMOLLM2_ID), resumes(service, "diverged", SMOLLM2_ID)) == (1, 1)
