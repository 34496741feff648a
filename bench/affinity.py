"""Scenario "affinity": interleaved multi-turn conversations over two replicas, cache-affine vs round-robin.

One router, two models on the same SmolLM2 file, each ``replicas = 2`` (one slot and the
default prompt cache per replica): ``affine`` routes by cache affinity (the default),
``spread`` round-robin (shown as *direct*). The same conversations (~1,000-token prefixes)
run on both in the same run: each turn round visits every conversation in a shuffled order
(a fixed order would make round-robin affine by accident), asking the affine model and the
round-robin one in turn (which goes first alternates by round). Measured on the follow-up
turns (every turn after a conversation's first): next-turn latency p50/p95, and the share of
prompt tokens llama-server found in the replica's cache (``timings.cache_n`` against
``prompt_n``, the tokens it processed). Targets: >= 80 % from cache with affinity, and
round-robin processing >= 1.5x the prompt tokens affinity does.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import httpx

from bench.harness import llama_setup, write_config
from bench.scenarios import Result, Row, Target
from tests.support.conversation import TURN_TIMEOUT_S, Conversation, Turn
from tests.support.service import running_service

MODES = {"affine": "affinity", "spread": "round_robin"}
CACHED_SHARE, PROCESSED_RATIO = 0.8, 1.5


def _config(scratch: Path) -> Path:
    setup = llama_setup(parallel=1)
    shape = {"runtime": "llamacpp", "path": str(setup.model_path), "ctx_size": 2048, "parallel": 1, "preload": True}
    models = {name: {**shape, "replicas": 2, "replica_routing": routing} for name, routing in MODES.items()}
    top_level = {"kv_cache_disk_mb": 0}
    return write_config(scratch / "affinity.toml", models, queue_size=16, binary=setup.binary, top_level=top_level)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def affinity(conversations: int, turns: int, scratch: Path) -> Result:
    follow_ups: dict[str, list[Turn]] = {mode: [] for mode in MODES}
    rng = random.Random(26)
    with (
        running_service(_config(scratch), scratch / "logs", wait_ready=True) as service,
        httpx.Client(base_url=service.url, timeout=TURN_TIMEOUT_S) as client,
    ):
        chats = {mode: [Conversation(mode, turns=6, seed=seed) for seed in range(conversations)] for mode in MODES}
        for turn in range(turns):
            order = rng.sample(range(conversations), conversations)
            modes = list(MODES) if turn % 2 == 0 else list(MODES)[::-1]
            for index in order:
                for mode in modes:
                    answered = chats[mode][index].next_turn(client)
                    if turn > 0:
                        follow_ups[mode].append(answered)

    def share(mode: str) -> float:
        cached = sum(t.cache_n for t in follow_ups[mode])
        return cached / (cached + sum(t.prompt_n for t in follow_ups[mode]))

    def processed(mode: str) -> float:
        return float(sum(t.prompt_n for t in follow_ups[mode]))

    def latency_ms(mode: str, at: float) -> float:
        return _percentile([t.seconds * 1000 for t in follow_ups[mode]], at)

    prompt = statistics.median(t.prompt_tokens for t in follow_ups["affine"])
    result = Result(
        "affinity",
        f"{conversations} interleaved conversations x {turns} turns (~{prompt:.0f}-token prompts) over 2 replicas: "
        "round-robin (direct) vs cache-affine (routed), follow-up turns",
    )
    result.rows = [
        Row("prompt tokens from cache", "%", share("spread") * 100, share("affine") * 100, plot=True),
        Row("prompt tokens processed", "tokens", processed("spread"), processed("affine"), plot=True),
        Row("next-turn latency p50", "ms", latency_ms("spread", 0.5), latency_ms("affine", 0.5), plot=True),
        Row("next-turn latency p95", "ms", latency_ms("spread", 0.95), latency_ms("affine", 0.95)),
    ]
    result.targets = [
        Target("affinity: follow-up prompt tokens from cache", share("affine") * 100, ">=", CACHED_SHARE * 100, "%"),
        Target(
            "affinity: round-robin / affine prompt tokens processed",
            processed("spread") / max(processed("affine"), 1.0),
            ">=",
            PROCESSED_RATIO,
            "x",
        ),
    ]
    result.notes = [f"{len(follow_ups['affine'])} follow-up turns per mode, turn order shuffled per round (seed 26)"]
    return result
