"""llama-server's in-RAM prompt cache stays within the memory estimate the capacity scheduler counts.

Each distinct prompt a slot moves away from is copied into the prompt cache (SmolLM2 at
~2,000 tokens: ~43 MiB each). Unbounded (llama-server's own default is 8 GiB), 50 of them
would grow the child by ~2 GiB past an estimate of ~250 MiB; with ``cache_ram_mb`` (256 by
default, counted in the estimate) the cache drops its oldest entries instead.

CPU cost: the prompts share a ~1,950-token body and differ in their last line, and
``--slot-prompt-similarity 0`` makes llama-server pick the slot by LRU, which copies the
slot's previous prompt into the cache every time - while only the new last line is
prefilled (the body is already in the slot). So one full prefill, then 50 cheap turns: about
30 s on CI's 2 cores. The cache grows exactly as it would for 50 unrelated prompts.
"""

from __future__ import annotations

import random

import httpx

from inference_service.router.observability.memory import margin_mb
from tests.integration.continuity.conftest import StartService
from tests.support.api import model_card
from tests.support.configs import SMOLLM2_ID, smollm2
from tests.support.conversation import LONG_CONTEXT, TURN_TIMEOUT_S
from tests.support.events import listening

PROMPTS = 50
PROMPT_CACHE_ENTRY_MB = 40  # the state of one ~2,000-token SmolLM2 prompt, as its cache holds it


#: Slot selection by LRU: every prompt's slot copies the previous prompt into the cache (see above).
SIMILARITY_OFF = ["--slot-prompt-similarity", "0"]


def body_text(words: int = 330) -> str:
    """Shared by every prompt; ~6 SmolLM2 tokens per word (330 words: ~1,950 tokens)."""
    rng = random.Random(11)
    return " ".join(f"item{rng.randrange(100000)}" for _ in range(words))


def test_a_childs_memory_stays_within_its_estimate_after_50_distinct_2k_token_prompts(
    start_service: StartService,
) -> None:
    model = smollm2(**LONG_CONTEXT, extra_args=SIMILARITY_OFF)
    service = start_service({SMOLLM2_ID: model})
    body = body_text()
    rss: list[float] = []
    with httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client:
        for number in range(PROMPTS):
            prompt = f"{body}\nDocument {number}: summary."
            answer = client.post("/v1/completions", json={"model": SMOLLM2_ID, "prompt": prompt, "max_tokens": 1})
            answer.raise_for_status()
            assert answer.json()["usage"]["prompt_tokens"] >= 1900
            rss.append(model_card(service, SMOLLM2_ID)["rss_mb"])
    estimate = model_card(service, SMOLLM2_ID)["footprint_mb"]
    # The prompts did fill the cache (the check below is not vacuous) ...
    assert max(rss) - rss[0] >= 4 * PROMPT_CACHE_ENTRY_MB, rss
    # ... and the cache stayed within its bound, which the estimate counts.
    assert max(rss) <= estimate + margin_mb(estimate), f"estimate {estimate} MiB, RSS after each prompt: {rss}"


def test_a_child_growing_past_its_estimate_gets_a_memory_warning(start_service: StartService) -> None:
    """The estimate knows ``cache_ram_mb = 0``; ``extra_args`` let the prompt cache grow anyway (the last
    ``--cache-ram`` wins), as a runtime option the estimate cannot know would."""
    model = smollm2(ctx_size=1024, parallel=1, cache_ram_mb=0, extra_args=[*SIMILARITY_OFF, "--cache-ram", "8192"])
    service = start_service({SMOLLM2_ID: model})
    body = body_text(words=150)  # ~900 tokens: ~20 MiB of prompt cache per prompt
    with (
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
        listening(f"{service.url}/v1/events?types=memory_warning") as events,
    ):
        for number in range(12):
            prompt = f"{body}\nDocument {number}: summary."
            client.post("/v1/completions", json={"model": SMOLLM2_ID, "prompt": prompt, "max_tokens": 1})
        warning = events.wait_for(lambda event: event["model"] == SMOLLM2_ID, timeout_s=30)
        card = model_card(service, SMOLLM2_ID)
    assert warning["estimate_mb"] == card["footprint_mb"]
    assert warning["rss_mb"] > warning["estimate_mb"] + warning["margin_mb"]
