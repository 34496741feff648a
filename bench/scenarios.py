"""The five measurements, each comparing routed traffic with direct traffic in the same run.

Direct and routed phases alternate (A B B A A B ...), one request at a time at
concurrency 1, so slow drifts of a busy machine land on both sides evenly instead of
biasing whichever ran second.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import aiohttp

from bench.harness import INSTANT_ID, LLM_ID, LlamaSetup, cpu_seconds, rss_mb, spawn_llama_until_healthy
from bench.load import LoadClient, LoadResult, Throughput, percentile, run_wrk

SEED = 42
PROMPTS = (
    "Name a colour.",
    "What is two plus two?",
    "Say hello in French.",
    "Give me one word that rhymes with cat.",
    "What is the capital of Italy?",
)
PROXY_CHUNKS = 16  # SSE token chunks per streamed response from the instant upstream
CHAT = "/v1/chat/completions"


@dataclass
class Plan:
    """How much traffic each scenario sends; ``quick()`` is for a busy machine or development."""

    latency_requests: int = 100
    stream_c1_requests: int = 40
    stream_c8_rounds: int = 6
    stream_tokens: int = 48
    proxy_duration_s: float = 5.0
    cold_start_reps: int = 5
    memory_warmup_requests: int = 200
    memory_requests: int = 1000
    stream_concurrency: tuple[int, ...] = (1, 8)
    proxy_concurrency: tuple[int, ...] = (1, 16, 64)
    swap_requests: int = 100  # "two models, one slot"
    continuity_rounds: int = 3  # each: a warm turn, one after unload + load, one after a swap
    affinity_conversations: int = 8  # interleaved, over two replicas
    affinity_turns: int = 6  # per conversation: the first is cold, the rest are measured
    affinity_throughput_rounds: int = 4  # c8 rounds per side, 1 replica vs 2, alternating
    scale_chunks: int = 50  # per drip stream
    scale_gap_ms: float = 20.0  # between a drip stream's chunks
    scale_concurrency: tuple[int, ...] = (256, 1000)
    scale_rounds: int = 2  # whole batches per side and concurrency (alternating)
    many_hosts: int = 20
    many_remote_models: int = 200
    many_llamacpp_models: int = 50
    many_settle_s: float = 3.0
    many_idle_window_s: float = 10.0
    many_list_requests: int = 20

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            latency_requests=30,
            stream_c1_requests=12,
            stream_c8_rounds=2,
            stream_tokens=24,
            proxy_duration_s=2.0,
            cold_start_reps=3,
            swap_requests=40,
            continuity_rounds=2,
            affinity_conversations=4,
            affinity_turns=3,
            affinity_throughput_rounds=2,
            scale_rounds=1,
            many_idle_window_s=6.0,
        )


@dataclass
class Row:
    """One metric measured both ways. ``direct`` is None where there is no direct counterpart."""

    metric: str
    unit: str
    direct: float | None
    routed: float
    plot: bool = False  # a headline number: drawn in the chart

    @property
    def added(self) -> float | None:
        return None if self.direct is None else self.routed - self.direct

    @property
    def ratio(self) -> float | None:
        return None if not self.direct else self.routed / self.direct


@dataclass
class Target:
    name: str
    measured: float
    op: Literal["<=", ">="]
    limit: float
    unit: str

    @property
    def passed(self) -> bool:
        return self.measured <= self.limit if self.op == "<=" else self.measured >= self.limit


@dataclass
class Result:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        rows = [{**asdict(row), "added": row.added, "ratio": row.ratio} for row in self.rows]
        targets = [{**asdict(target), "passed": target.passed} for target in self.targets]
        return {"name": self.name, "title": self.title, "rows": rows, "targets": targets, "notes": self.notes}


def chat_payloads(model: str, max_tokens: int, stream: bool) -> list[bytes]:
    """Deterministic bodies: temperature 0, a fixed seed, and ``ignore_eos`` (a llama-server
    extension the router passes through) so every answer is exactly ``max_tokens`` long."""
    return [
        json.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "seed": SEED,
                "ignore_eos": True,
                "stream": stream,
            }
        ).encode()
        for prompt in PROMPTS
    ]


async def paired(
    client: LoadClient,
    urls: dict[str, str],
    payloads: Sequence[bytes],
    concurrency: int,
    rounds: int,
    per_round: int,
    stream: bool,
) -> dict[str, LoadResult]:
    """Alternate the targets round by round, reversing the order every round (ABBA...)."""
    results = {mode: LoadResult() for mode in urls}
    for number in range(rounds):
        order = list(urls) if number % 2 == 0 else list(reversed(urls))
        for mode in order:
            results[mode].merge(await client.run(urls[mode], payloads, concurrency, requests=per_round, stream=stream))
    return results


def _check_errors(results: dict[str, LoadResult], what: str) -> list[str]:
    return [f"{what}: {mode} had {result.errors} failed requests" for mode, result in results.items() if result.errors]


# --------------------------------------------------------------------------- 1. non-streaming latency


async def nonstream_latency(client: LoadClient, direct: str, routed: str, plan: Plan) -> Result:
    payloads = chat_payloads(LLM_ID, 8, stream=False)
    urls = {"direct": direct + CHAT, "routed": routed + CHAT}
    await paired(client, urls, payloads, 1, 4, 1, stream=False)  # warm-up: connections, prompt cache
    runs = await paired(client, urls, payloads, 1, plan.latency_requests, 1, stream=False)
    d, r = runs["direct"], runs["routed"]
    result = Result(
        "latency", f"Non-streaming latency, concurrency 1, max_tokens 8 ({plan.latency_requests} requests each)"
    )
    result.rows = [
        Row("latency p50", "ms", d.latency_ms(50), r.latency_ms(50), plot=True),
        Row("latency p99", "ms", d.latency_ms(99), r.latency_ms(99), plot=True),
    ]
    result.notes = _check_errors(runs, "latency")
    return result


# --------------------------------------------------------------------------- 2. streaming


async def streaming(client: LoadClient, direct: str, routed: str, plan: Plan) -> Result:
    payloads = chat_payloads(LLM_ID, plan.stream_tokens, stream=True)
    urls = {"direct": direct + CHAT, "routed": routed + CHAT}
    result = Result("streaming", f"Streaming, {plan.stream_tokens} tokens per answer")
    for concurrency in plan.stream_concurrency:
        await paired(client, urls, payloads, concurrency, 2, concurrency, stream=True)  # warm-up
        if concurrency == 1:
            runs = await paired(client, urls, payloads, 1, plan.stream_c1_requests, 1, stream=True)
        else:  # whole batches, so every round decodes `concurrency` streams together from start to end
            runs = await paired(client, urls, payloads, concurrency, plan.stream_c8_rounds, concurrency, stream=True)
        d, r = runs["direct"], runs["routed"]
        result.rows += [
            Row(f"c{concurrency} TTFT p50", "ms", d.ttft_ms(50), r.ttft_ms(50), plot=True),
            Row(f"c{concurrency} TTFT p99", "ms", d.ttft_ms(99), r.ttft_ms(99)),
            Row(f"c{concurrency} tokens/s (aggregate)", "tok/s", d.tokens_per_s, r.tokens_per_s, plot=True),
            Row(
                f"c{concurrency} tokens/s per stream p50",
                "tok/s",
                d.stream_decode_tokens_per_s,
                r.stream_decode_tokens_per_s,
            ),
        ]
        result.targets.append(
            Target(
                f"streaming tokens/s routed/direct, c{concurrency}", r.tokens_per_s / d.tokens_per_s, ">=", 0.97, "x"
            )
        )
        if concurrency == 1:
            result.targets.append(
                Target("TTFT added by the router, p50 (c1)", r.ttft_ms(50) - d.ttft_ms(50), "<=", 5.0, "ms")
            )
        result.notes += _check_errors(runs, f"streaming c{concurrency}")
    return result


# --------------------------------------------------------------------------- 4. cold start


async def cold_start(routed: str, setup: LlamaSetup, plan: Plan, poll_interval_s: float) -> Result:
    """Routed: ``POST /v1/models/{id}/load`` until it answers ``loaded``. Direct: the same
    llama-server command line spawned by hand, polled every 10 ms until ``/health`` is 200."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:

        async def call(action: str) -> dict[str, object]:
            async with session.post(f"{routed}/v1/models/{LLM_ID}/{action}") as response:
                card: dict[str, object] = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"{action} {LLM_ID}: HTTP {response.status}: {card}")
                return card

        async def routed_load() -> float:
            started = time.perf_counter()
            card = await call("load")
            elapsed = time.perf_counter() - started
            if card.get("status") != "loaded":
                raise RuntimeError(f"load {LLM_ID} answered status {card.get('status')!r}")
            await call("unload")
            return elapsed

        async def direct_load() -> float:
            return await asyncio.to_thread(spawn_llama_until_healthy, setup, poll_interval_s)

        await call("unload")  # from here on, the only llama-server is the one being measured
        await direct_load()  # warm-up: the model file in the page cache, the binary's pages too
        times: dict[str, list[float]] = {"direct": [], "routed": []}
        for rep in range(plan.cold_start_reps):
            steps = (("direct", direct_load), ("routed", routed_load))
            for mode, step in steps if rep % 2 == 0 else reversed(steps):
                times[mode].append(await step())
    d = percentile([t * 1000 for t in times["direct"]], 50)
    r = percentile([t * 1000 for t in times["routed"]], 50)
    result = Result("cold_start", f"Cold start to serving, median of {plan.cold_start_reps}")
    result.rows = [
        Row("load → ready p50", "ms", d, r, plot=True),
        Row("load → ready min", "ms", min(times["direct"]) * 1000, min(times["routed"]) * 1000),
    ]
    result.targets.append(Target("cold start routed − direct (p50)", r - d, "<=", 150.0, "ms"))
    result.notes.append(
        f"direct /health polled every {poll_interval_s * 1000:g} ms; the router polls every 50 ms (health_interval_s)"
    )
    return result


# --------------------------------------------------------------------------- 5. memory


async def memory(client: LoadClient, routed: str, router_pid: int, plan: Plan) -> Result:
    """RSS of the router process (not its children): fresh, after a warm-up, after 1,000 more requests.

    Growth is judged from the warmed-up baseline: the first requests legitimately allocate
    (connection pools, metric label children, lazily built validators); a leak keeps growing.
    """
    url = routed + CHAT
    json_payloads = chat_payloads(INSTANT_ID, 8, stream=False)
    sse_payloads = chat_payloads(INSTANT_ID, PROXY_CHUNKS, stream=True)
    await asyncio.sleep(1.0)
    idle = rss_mb(router_pid)

    async def mixed(total: int) -> LoadResult:
        result = await client.run(url, json_payloads, 16, requests=total // 2)
        result.merge(await client.run(url, sse_payloads, 16, requests=total - total // 2, stream=True))
        return result

    warm_run = await mixed(plan.memory_warmup_requests)
    warm = rss_mb(router_pid)
    run = await mixed(plan.memory_requests)
    after = rss_mb(router_pid)
    result = Result("memory", "Router RSS (the router process alone)")
    result.rows = [
        Row("RSS idle (fresh)", "MB", None, idle, plot=True),
        Row(f"RSS after {plan.memory_warmup_requests} warm-up requests", "MB", None, warm, plot=True),
        Row(f"RSS after {plan.memory_requests} more requests", "MB", None, after, plot=True),
    ]
    result.targets += [
        Target("router RSS idle", idle, "<=", 120.0, "MB"),
        Target(f"router RSS growth over {plan.memory_requests} requests", (after - warm) / warm * 100, "<=", 5.0, "%"),
    ]
    result.notes.append(f"growth from the fresh process: {(after - idle) / idle * 100:+.1f} %")
    if failed := warm_run.errors + run.errors:
        result.notes.append(f"memory: {failed} failed requests")
    return result


def rss_after(result: Result, router_pid: int, what: str) -> None:
    """Append one more RSS reading (e.g. after the capacity runs' tens of thousands of requests)."""
    result.rows.append(Row(f"RSS after {what}", "MB", None, rss_mb(router_pid), plot=True))


# --------------------------------------------------------------------------- 3. pure proxy capacity


async def proxy_capacity(
    client: LoadClient,
    direct: str,
    routed: str,
    router_pid: int,
    bare: tuple[str, int],
    plan: Plan,
    wrk: str | None,
) -> Result:
    """Requests/s (and SSE chunks/s) against an upstream that answers instantly: the router's own ceiling.

    At JSON c16 the bare relay (``bench.bare_relay``) is measured too: the floor that any
    Python relay on uvicorn + aiohttp stays above on this machine."""
    tool = "wrk (1 thread)" if wrk else "aiohttp closed-loop client"
    result = Result(
        "proxy", f"Pure proxy capacity vs an instant upstream, {plan.proxy_duration_s:g} s per run, load by {tool}"
    )
    kinds = {
        "json": chat_payloads(INSTANT_ID, 8, stream=False),
        "sse": chat_payloads(INSTANT_ID, PROXY_CHUNKS, stream=True),
    }
    urls = {"direct": direct + CHAT, "routed": routed + CHAT}

    async def measure(url: str, payloads: list[bytes], concurrency: int, stream: bool, duration_s: float) -> Throughput:
        if wrk:
            return await asyncio.to_thread(run_wrk, wrk, url, payloads[0], concurrency, duration_s)
        return (await client.run(url, payloads, concurrency, duration_s=duration_s, stream=stream)).throughput()

    for kind, payloads in kinds.items():  # warm-up: both paths, the router's upstream pool
        for url in urls.values():
            await measure(url, payloads, 16, kind == "sse", 1.0)
    for number, (concurrency, (kind, payloads)) in enumerate(itertools.product(plan.proxy_concurrency, kinds.items())):
        runs: dict[str, Throughput] = {}
        cpu_per_request_ms = float("nan")
        for mode in ("direct", "routed") if number % 2 == 0 else ("routed", "direct"):
            cpu_before = cpu_seconds(router_pid)
            runs[mode] = await measure(urls[mode], payloads, concurrency, kind == "sse", plan.proxy_duration_s)
            if mode == "routed" and runs[mode].requests:
                cpu_per_request_ms = (cpu_seconds(router_pid) - cpu_before) / runs[mode].requests * 1000
            if runs[mode].errors:
                result.notes.append(f"proxy {kind} c{concurrency} {mode}: {runs[mode].errors} errors")
        d, r = runs["direct"], runs["routed"]
        label = f"{kind} c{concurrency}"
        result.rows.append(Row(f"{label} requests/s", "req/s", d.requests_per_s, r.requests_per_s, plot=kind == "json"))
        if kind == "sse":
            result.rows.append(
                Row(f"{label} chunks/s", "chunks/s", d.requests_per_s * PROXY_CHUNKS, r.requests_per_s * PROXY_CHUNKS)
            )
        result.rows += [
            Row(f"{label} latency p50", "ms", d.p50_ms, r.p50_ms),
            Row(f"{label} router CPU per request", "ms", None, cpu_per_request_ms),
        ]
        if kind == "json" and concurrency == 16:
            bare_url, bare_pid = bare
            cpu_before = cpu_seconds(bare_pid)
            floor = await measure(bare_url + CHAT, payloads, concurrency, False, plan.proxy_duration_s)
            floor_cpu_ms = (cpu_seconds(bare_pid) - cpu_before) / max(floor.requests, 1) * 1000
            result.rows += [
                Row(f"{label} requests/s: bare relay → router", "req/s", floor.requests_per_s, r.requests_per_s),
                Row(f"{label} CPU per request: bare relay → router", "ms", floor_cpu_ms, cpu_per_request_ms),
            ]
            result.targets.append(
                Target("pure proxy routed requests/s, json c16", r.requests_per_s, ">=", 1500.0, "req/s")
            )
            result.notes.append(
                f"json c16: the router used {cpu_per_request_ms * r.requests_per_s / 10:.0f} % of a core; at "
                f"{cpu_per_request_ms:.3f} ms CPU per request a whole core would carry ~{1000 / cpu_per_request_ms:,.0f} req/s"
            )
    return result
