"""A client that hangs up on an orchestration, streamed or not: its running stage is cancelled
at once, no later stage starts, and the request is counted as 499."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.orchestration.conftest import QUESTION
from tests.support.api import abandoned_post, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, wait_until
from tests.support.llama import tokens_predicted
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration

#: The spec: the router lets go of an abandoned request within 1 s.
ROUTER_RELEASE_S = 1.0
#: How long after the hang-up a critic stage would have had to start (the generator's 400
#: tokens take seconds; the critic would follow at once).
NO_LATER_STAGE_S = 3.0


def orchestrated_closed(router: ServiceProcess) -> float:
    metrics = httpx.get(router.url + "/metrics", timeout=30).text
    labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions:orchestrated", "status": "499"}
    return sample(metrics, "inference_requests_total", **labels) or 0.0


@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "streamed"])
def test_an_abandoned_orchestration_cancels_its_stage_and_starts_no_other(router: ServiceProcess, stream: bool) -> None:
    wait_until(
        lambda: all(model_card(router, model)["in_flight"] == 0 for model in (SMOLLM2_ID, GEMMA_ID)), timeout_s=60
    )
    critic_tokens = tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}")
    closed_before = orchestrated_closed(router)
    body = {
        "messages": QUESTION,
        "orchestration_mode": "critique",
        "max_tokens": 400,
        "ignore_eos": True,
        "temperature": 0,
        "stream": stream,
    }
    with abandoned_post(router, body):
        wait_until(
            lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 1, timeout_s=60, interval_s=0.02
        )  # the generator stage
    hung_up = time.monotonic()
    wait_until(lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 0, timeout_s=30, interval_s=0.02)
    released = time.monotonic() - hung_up
    assert released < ROUTER_RELEASE_S, f"the generator stage ran on {released:.2f}s after the client hung up"
    time.sleep(NO_LATER_STAGE_S)
    assert model_card(router, GEMMA_ID)["in_flight"] == 0
    assert tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}") == critic_tokens, "the critic stage ran for nobody"
    wait_until(lambda: orchestrated_closed(router) == closed_before + 1, timeout_s=5)
