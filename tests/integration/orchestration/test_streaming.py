"""A streamed critique: stages announced as SSE comments, the final stage token by token,
and the orchestration report in the last data chunk."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION, SHORT
from tests.support.configs import GEMMA_ID, SMOLLM2_ID
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess
from tests.support.sse import DONE, SSEStream, post_sse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def streamed(router: ServiceProcess) -> SSEStream:
    body = {"messages": QUESTION, "orchestration_mode": "critique", "stream": True, **SHORT}
    stream = post_sse(router.url + "/v1/chat/completions", body)
    assert stream.status == 200, stream.data
    return stream


def test_stream_ends_with_exactly_one_done(streamed: SSEStream) -> None:
    assert streamed.data[-1] == DONE and streamed.data.count(DONE) == 1


def test_preliminary_stages_are_announced_as_comments(streamed: SSEStream) -> None:
    assert f"stage generator done ({SMOLLM2_ID})" in streamed.comments
    assert f"stage critic done ({GEMMA_ID})" in streamed.comments


def test_last_data_chunk_carries_the_orchestration_report_and_total_usage(streamed: SSEStream) -> None:
    last = streamed.chunks[-1]
    assert last["orchestration"]["mode"] == "critique"
    assert [stage["role"] for stage in last["orchestration"]["stages"]] == ["generator", "critic", "reviser"]
    assert last["usage"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in last["orchestration"]["stages"])
    assert not any("orchestration" in chunk for chunk in streamed.chunks[:-1])


def test_every_chunk_has_one_id_and_the_primary_model(streamed: SSEStream) -> None:
    assert len({chunk["id"] for chunk in streamed.chunks}) == 1
    assert {chunk["model"] for chunk in streamed.chunks} == {SMOLLM2_ID}
    assert {chunk["object"] for chunk in streamed.chunks} == {"chat.completion.chunk"}


def test_final_stage_arrives_as_content_deltas(streamed: SSEStream) -> None:
    deltas = [chunk for chunk in streamed.chunks if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or [])]
    assert len(deltas) > 1  # token by token, not one block
    assert streamed.content


def test_streamed_orchestration_is_counted_in_metrics(router: ServiceProcess, streamed: SSEStream) -> None:
    metrics = httpx.get(router.url + "/metrics", timeout=10).text
    counted = sample(metrics, "inference_requests_total", model=SMOLLM2_ID, endpoint="chat/completions:orchestrated", status="200")
    assert counted is not None and counted >= 1
