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

In the same run and router, a third model on the same file with one replica (``single``)
measures what the second replica buys: a closed loop of 8 concurrent streamed requests
(:data:`THROUGHPUT_CONCURRENCY`), alternating rounds between ``single`` and the two-replica
``affine`` model, each answer exactly :data:`THROUGHPUT_TOKENS` tokens; generated tokens/s and
requests/s, and their ratio. No target: on a machine with fewer cores than two llama-servers
want, the two replicas share the CPU and the ratio says so.
"""

from __future__ import annotations

import asyncio
import random
import statistics
from pathlib import Path

import httpx

from bench.harness import llama_setup, write_config
from bench.load import LoadClient, LoadResult
from bench.scenarios import Result, Row, Target, chat_payloads
from tests.support.conversation import TURN_TIMEOUT_S, Conversation, Turn
from tests.support.service import running_service

MODES = {"affine": "affinity", "spread": "round_robin"}
CACHED_SHARE, PROCESSED_RATIO = 0.8, 1.5
THROUGHPUT_CONCURRENCY, THROUGHPUT_TOKENS = 8, 32
#: The throughput comparison's models: one replica against the two-replica affine one.
SINGLE, REPLICATED = "single", "affine"
COMPARED = (SINGLE, REPLICATED)


def _config(scratch: Path) -> Path:
    setup = llama_setup(parallel=1)
    shape = {"runtime": "llamacpp", "path": str(setup.model_path), "ctx_size": 2048, "parallel": 1, "preload": True}
    models = {name: {**shape, "replicas": 2, "replica_routing": routing} for name, routing in MODES.items()}
    models[SINGLE] = {**shape, "replicas": 1}
    top_level: dict[str, object] = {"kv_cache_disk_mb": 0}
    return write_config(scratch / "affinity.toml", models, queue_size=16, binary=setup.binary, top_level=top_level)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def affinity(conversations: int, turns: int, throughput_rounds: int, scratch: Path) -> list[Result]:
    """The conversations (affine vs round-robin), then the throughput of one replica vs two, in one router."""
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
        loads = asyncio.run(_throughput(service.url, throughput_rounds))
    return [_conversations_result(conversations, turns, follow_ups), _throughput_result(loads, throughput_rounds)]


async def _throughput(url: str, rounds: int) -> dict[str, LoadResult]:
    """Closed-loop c8 rounds, alternating the one-replica model and the two-replica one (ABBA...)."""
    payloads = {model: chat_payloads(model, THROUGHPUT_TOKENS, stream=True) for model in COMPARED}
    results = {model: LoadResult() for model in COMPARED}
    async with LoadClient() as client:
        for number in range(rounds):
            for model in COMPARED if number % 2 == 0 else COMPARED[::-1]:
                run = await client.run(
                    f"{url}/v1/chat/completions",
                    payloads[model],
                    THROUGHPUT_CONCURRENCY,
                    requests=2 * THROUGHPUT_CONCURRENCY,
                    stream=True,
                )
                results[model].merge(run)
    return results


def _conversations_result(conversations: int, turns: int, follow_ups: dict[str, list[Turn]]) -> Result:

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


def _throughput_result(loads: dict[str, LoadResult], rounds: int) -> Result:
    single, replicated = loads[SINGLE], loads[REPLICATED]
    result = Result(
        "affinity_throughput",
        f"c{THROUGHPUT_CONCURRENCY} closed loop, streamed {THROUGHPUT_TOKENS}-token answers: "
        "1 replica (direct) vs 2 replicas (routed), same router and run",
    )
    result.rows = [
        Row("generated tokens/s", "tokens/s", single.tokens_per_s, replicated.tokens_per_s, plot=True),
        Row("requests/s", "req/s", single.throughput().requests_per_s, replicated.throughput().requests_per_s),
        Row("latency p50", "ms", single.latency_ms(50), replicated.latency_ms(50)),
    ]
    result.notes = [
        f"{rounds} alternating rounds of {2 * THROUGHPUT_CONCURRENCY} requests per side; "
        f"failed requests: 1 replica {single.errors}, 2 replicas {replicated.errors}"
    ]
    return result
