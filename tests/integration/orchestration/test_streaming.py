"""A streamed critique: stages announced as SSE comments, the final stage token by token,
the orchestration report on the finish_reason chunk, usage only when asked for."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION, SHORT
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.prometheus import metrics_once, sample
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, SSEStream, post_sse

pytestmark = pytest.mark.integration


ORCHESTRATED = {"model": SMOLLM2_ID, "endpoint": "chat/completions:orchestrated", "status": "200"}


def _metrics(router: ServiceProcess) -> str:
    return httpx.get(router.url + "/metrics", timeout=10).text


@dataclass
class Streamed:
    stream: SSEStream
    counted: float  # how much the orchestrated-requests counter grew meanwhile


@pytest.fixture(scope="module")
def streamed_and_counted(router: ServiceProcess) -> Streamed:
    before = sample(_metrics(router), "inference_requests_total", **ORCHESTRATED) or 0.0
    body = {"messages": QUESTION, "orchestration_mode": "critique", "stream": True, **SHORT}
    stream = post_sse(router.url + "/v1/chat/completions", body)
    assert stream.status == 200, stream.data
    after = metrics_once(lambda: _metrics(router), "inference_requests_total", before + 1, **ORCHESTRATED)
    return Streamed(stream, (sample(after, "inference_requests_total", **ORCHESTRATED) or 0.0) - before)


@pytest.fixture(scope="module")
def streamed(streamed_and_counted: Streamed) -> SSEStream:
    return streamed_and_counted.stream


def test_stream_ends_with_exactly_one_done(streamed: SSEStream) -> None:
    assert streamed.data[-1] == DONE and streamed.data.count(DONE) == 1


def test_preliminary_stages_are_announced_as_comments(streamed: SSEStream) -> None:
    assert f"stage generator done ({SMOLLM2_ID})" in streamed.comments
    assert f"stage critic done ({GEMMA_ID})" in streamed.comments


def test_the_finish_reason_chunk_carries_the_orchestration_report(streamed: SSEStream) -> None:
    last = streamed.chunks[-1]
    assert last["choices"][0]["finish_reason"]
    assert last["orchestration"]["mode"] == "critique"
    assert [stage["role"] for stage in last["orchestration"]["stages"]] == ["generator", "critic", "reviser"]
    assert not any("orchestration" in chunk for chunk in streamed.chunks[:-1])


def test_without_include_usage_every_chunk_has_a_choice_and_none_has_usage(streamed: SSEStream) -> None:
    assert all(len(chunk["choices"]) == 1 for chunk in streamed.chunks)
    assert not any(chunk.get("usage") for chunk in streamed.chunks)


def test_include_usage_adds_one_usage_only_chunk_with_the_total_of_all_stages(router: ServiceProcess) -> None:
    body = {
        "messages": QUESTION,
        "orchestration_mode": "critique",
        "stream": True,
        "stream_options": {"include_usage": True},
        **SHORT,
    }
    stream = post_sse(router.url + "/v1/chat/completions", body)
    assert stream.status == 200, stream.data
    *answer, usage_chunk = stream.chunks
    assert usage_chunk["choices"] == []
    stages = answer[-1]["orchestration"]["stages"]
    assert usage_chunk["usage"]["completion_tokens"] == sum(stage["usage"]["completion_tokens"] for stage in stages)
    assert not any(chunk.get("usage") for chunk in answer)


def test_every_chunk_has_one_id_and_the_primary_model(streamed: SSEStream) -> None:
    assert len({chunk["id"] for chunk in streamed.chunks}) == 1
    assert {chunk["model"] for chunk in streamed.chunks} == {SMOLLM2_ID}
    assert {chunk["object"] for chunk in streamed.chunks} == {"chat.completion.chunk"}


def test_final_stage_arrives_as_content_deltas(streamed: SSEStream) -> None:
    deltas = [
        chunk
        for chunk in streamed.chunks
        if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or [])
    ]
    assert len(deltas) > 1  # token by token, not one block
    assert streamed.content


def test_streamed_orchestration_is_counted_once_in_metrics(streamed_and_counted: Streamed) -> None:
    assert streamed_and_counted.counted == 1
