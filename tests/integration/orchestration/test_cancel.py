"""Cancelling an orchestration by its request id, streamed or not: its running stage is cancelled,
no later stage starts, and its client gets the documented answer."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.orchestration.conftest import GENERATION_TOKENS, long_critique, wait_for_idle_children
from tests.support.api import model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, wait_until
from tests.support.llama import tokens_predicted
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def cancelled_orchestration(router: ServiceProcess, stream: bool, request_id: str) -> list[str]:
    """The orchestration's answer, as its client got it: the lines of its body."""
    response = httpx.post(
        router.url + "/v1/chat/completions",
        json=long_critique(stream),
        headers={"X-Request-ID": request_id},
        timeout=120,
    )
    return [f"HTTP {response.status_code}", *(line for line in response.text.splitlines() if line)]


@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "streamed"])
def test_a_cancelled_orchestration_cancels_its_stage_starts_no_other_and_tells_its_client(
    router: ServiceProcess, stream: bool
) -> None:
    """Proved by the children's own token counters, as for a client that hangs up."""
    wait_until(
        lambda: all(model_card(router, model)["in_flight"] == 0 for model in (SMOLLM2_ID, GEMMA_ID)), timeout_s=60
    )
    wait_for_idle_children(router)
    generator_tokens = tokens_predicted(f"{router.url}/upstream/{SMOLLM2_ID}")
    critic_tokens = tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}")
    request_id = f"cancel-orchestration-{uuid.uuid4().hex}"
    with ThreadPoolExecutor(max_workers=1) as pool:
        answer = pool.submit(cancelled_orchestration, router, stream, request_id)
        wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 1, timeout_s=60, interval_s=0.02)

        assert httpx.post(f"{router.url}/v1/requests/{request_id}/cancel", timeout=30).status_code == 202

        lines = answer.result(timeout=60)
    if stream:
        assert lines[0] == "HTTP 200" and lines[-1] == "data: [DONE]", lines
        assert json.loads(lines[-2].removeprefix("data: "))["error"]["code"] == "request_cancelled"
    else:
        assert lines[0] == "HTTP 499", lines
        assert json.loads(lines[1])["error"]["code"] == "request_cancelled"
    assert model_card(router, GEMMA_ID)["in_flight"] == 0
    wait_for_idle_children(router)  # a slot's tokens reach its counter when the slot is released
    assert tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}") == critic_tokens, "the critic stage ran for nobody"
    generated = tokens_predicted(f"{router.url}/upstream/{SMOLLM2_ID}") - generator_tokens
    assert generated < GENERATION_TOKENS / 2, f"the generator ran on for {generated:.0f} tokens after the cancel"
