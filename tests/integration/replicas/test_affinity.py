"""Cache-affine routing over two real replicas, measured by llama-server's own account of each turn's prefill.

``timings.cache_n`` is how many prompt tokens a turn found in the replica's cache, ``prompt_n``
how many it processed (see tests/support/conversation.py). The same interleaved conversations
run against two models on the same run: one routed by affinity, one round-robin.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.integration.replicas.conftest import StartService
from tests.support.configs import smollm2
from tests.support.conversation import Conversation, Turn

#: Three conversations (odd, so round-robin sends each turn of one to the other replica than its last).
CONVERSATIONS = 3
FOLLOW_UPS = 2
REPLICAS = {"replicas": 2, "parallel": 1, "ctx_size": 1024, "preload": True}


def follow_ups(client: httpx.Client, model: str) -> list[Turn]:
    """Each conversation's first turn (cold), then its follow-ups interleaved with the others'."""
    conversations = [Conversation(model, turns=2, seed=seed) for seed in range(CONVERSATIONS)]
    for conversation in conversations:
        conversation.next_turn(client)
    return [conversation.next_turn(client) for _ in range(FOLLOW_UPS) for conversation in conversations]


def cached_share(turns: list[Turn]) -> float:
    return sum(t.cache_n for t in turns) / sum(t.cache_n + t.prompt_n for t in turns)


def test_follow_ups_come_from_cache_and_beat_round_robin(start_service: StartService) -> None:
    service = start_service(
        {"affine": smollm2(**REPLICAS), "spread": smollm2(**REPLICAS, replica_routing="round_robin")}
    )
    with httpx.Client(base_url=service.url, timeout=600) as client:
        affine, spread = follow_ups(client, "affine"), follow_ups(client, "spread")
    assert cached_share(affine) >= 0.8, [(t.cache_n, t.prompt_n) for t in affine]
    processed = sum(t.prompt_n for t in spread) / sum(t.prompt_n for t in affine)
    assert processed >= 1.5, ([(t.cache_n, t.prompt_n) for t in affine], [(t.cache_n, t.prompt_n) for t in spread])


def test_a_flood_of_one_prefix_is_served_by_both_replicas(start_service: StartService) -> None:
    service = start_service({"smol": smollm2(**REPLICAS)})
    conversation = Conversation("smol", turns=1)
    body: dict[str, Any] = {"model": "smol", "messages": conversation.messages, "max_tokens": 4, "temperature": 0}
    with httpx.Client(base_url=service.url, timeout=600) as client:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=body), range(16)))
        metrics = client.get("/metrics").text
    assert [a.status_code for a in answers] == [200] * 16
    served = {
        replica: float(count)
        for replica, count in re.findall(
            r'inference_replica_requests_total\{model="smol",replica="(\d)"\} (\S+)', metrics
        )
    }
    assert set(served) == {"0", "1"} and all(count >= 1 for count in served.values()), served
    assert sum(served.values()) == 16
