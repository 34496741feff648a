"""A client that hangs up on an orchestration, streamed or not: its running stage is cancelled,
no later stage starts, and the request is counted as 499."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.orchestration.conftest import GENERATION_TOKENS, long_critique, wait_for_idle_children
from tests.support.api import abandoned_post, model_card
from tests.support.configs import GEMMA_ID, SMOLLM2_ID, wait_until
from tests.support.llama import tokens_predicted
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.integration


def orchestrated_closed(router: ServiceProcess) -> float:
    metrics = httpx.get(router.url + "/metrics", timeout=30).text
    labels = {"model": SMOLLM2_ID, "endpoint": "chat/completions:orchestrated", "status": "499"}
    return sample(metrics, "inference_requests_total", **labels) or 0.0


@pytest.mark.parametrize("stream", [False, True], ids=["non-streamed", "streamed"])
def test_an_abandoned_orchestration_cancels_its_stage_and_starts_no_other(router: ServiceProcess, stream: bool) -> None:
    """Proved by the children's own token counters, not by the clock: the generator stopped
    long before its answer was done, and the critic never generated."""
    wait_until(
        lambda: all(model_card(router, model)["in_flight"] == 0 for model in (SMOLLM2_ID, GEMMA_ID)), timeout_s=60
    )
    wait_for_idle_children(router)  # an earlier test's abandoned request is counted on its release
    generator_tokens = tokens_predicted(f"{router.url}/upstream/{SMOLLM2_ID}")
    critic_tokens = tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}")
    closed_before = orchestrated_closed(router)
    with abandoned_post(router.url, long_critique(stream)):
        wait_until(
            lambda: model_card(router, SMOLLM2_ID)["in_flight"] == 1, timeout_s=60, interval_s=0.02
        )  # the generator stage
    # Counted once the orchestration has unwound: from then on no later stage can start.
    wait_until(lambda: orchestrated_closed(router) == closed_before + 1, timeout_s=60)
    assert model_card(router, GEMMA_ID)["in_flight"] == 0
    wait_for_idle_children(router)  # a slot's tokens reach its counter when the slot is released
    assert tokens_predicted(f"{router.url}/upstream/{GEMMA_ID}") == critic_tokens, "the critic stage ran for nobody"
    generated = tokens_predicted(f"{router.url}/upstream/{SMOLLM2_ID}") - generator_tokens
    assert generated < GENERATION_TOKENS / 2, f"the generator ran on for {generated:.0f} tokens after the hang-up"
