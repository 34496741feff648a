"""The scale scenarios: hundreds of concurrent streams through one router, and hundreds of models.

``scale``: a *drip* upstream (``bench.upstream`` with ``drip_ms``: chunks N ms apart, like a
GPU host decoding) streamed by 256 and then 1,000 clients at once, direct and routed in
alternating whole batches. Per batch every stream must end with ``[DONE]`` after exactly the
configured number of token chunks. Also: the router's RSS idle → peak (sampled every 50 ms
while routed streams run) and its CPU seconds per relayed chunk.

``many_models``: 200 ``remote`` models spread over 20 fake hosts (:mod:`tests.support.health_hosts`, which
count the probes they receive) plus 50 ``llamacpp`` models configured but never loaded,
compared with a baseline router holding one remote model per host: start-up time,
``/v1/models`` latency, RSS per additional remote model, idle CPU and probes per host.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from bench.harness import DRIP_ID, cpu_seconds, many_models_config, rss_mb
from bench.load import LoadClient, LoadResult, Sample, percentile
from bench.scenarios import CHAT, Plan, Result, Row, Target
from tests.support.health_hosts import HealthHosts
from tests.support.service import running_service

#: Router CPU per relayed chunk under 256 concurrent drip streams, measured on the code before
#: issue 16 (bench/README.md, "Streaming at scale"): the 3x target is computed from it.
CPU_PER_CHUNK_BASELINE_US = 79.0
RSS_SAMPLE_INTERVAL_S = 0.05


def drip_payloads(chunks: int, gap_ms: float) -> list[bytes]:
    return [
        json.dumps(
            {
                "model": DRIP_ID,
                "messages": [{"role": "user", "content": f"stream {number}"}],
                "max_tokens": chunks,
                "stream": True,
                "drip_ms": gap_ms,
            }
        ).encode()
        for number in range(4)
    ]


@contextlib.asynccontextmanager
async def rss_peak(pid: int) -> AsyncIterator[list[float]]:
    """Sample ``pid``'s RSS every 50 ms while the block runs; yields a one-item list holding the peak."""
    peak = [rss_mb(pid)]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], rss_mb(pid))
            await asyncio.sleep(RSS_SAMPLE_INTERVAL_S)

    task = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        peak[0] = max(peak[0], rss_mb(pid))


def _broken(run: LoadResult, chunks: int) -> list[Sample]:
    """Streams that failed, missed ``[DONE]`` or lost a chunk."""
    return [sample for sample in run.samples if not (sample.ok and sample.tokens == chunks)]


def _incomplete(run: LoadResult, chunks: int) -> int:
    return len(_broken(run, chunks))


def _failures(run: LoadResult, chunks: int) -> str:
    """The most common reasons streams broke, for the notes."""
    reasons = Counter(sample.error or f"{sample.tokens} of {chunks} chunks" for sample in _broken(run, chunks))
    return "; ".join(f"{count} × {why}" for why, count in reasons.most_common(5))


async def streams_at_scale(
    client: LoadClient, direct: str, routed: str, router_pid: int, bare: tuple[str, int], plan: Plan
) -> Result:
    """Direct, routed and through the bare relay (``bench.bare_relay``: the floor of any Python
    relay on uvicorn + aiohttp), whole batches in rotation; CPU per chunk for both relays."""
    chunks, gap_ms = plan.scale_chunks, plan.scale_gap_ms
    payloads = drip_payloads(chunks, gap_ms)
    bare_url, bare_pid = bare
    urls = {"direct": direct + CHAT, "routed": routed + CHAT, "bare": bare_url + CHAT}
    relay_pids = {"routed": router_pid, "bare": bare_pid}
    result = Result(
        "scale",
        f"Streaming at scale: {chunks} chunks {gap_ms:g} ms apart per stream, whole batches of concurrent streams "
        f"({plan.scale_rounds} per side, rotating direct / routed / bare relay)",
    )
    await asyncio.sleep(1.0)
    idle = rss_mb(router_pid)
    for url in urls.values():  # warm-up: connection pools on every path
        await client.run(url, payloads, 32, requests=32, stream=True)
    for concurrency in plan.scale_concurrency:
        runs = {mode: LoadResult() for mode in urls}
        cpu_s = dict.fromkeys(relay_pids, 0.0)
        relayed = dict.fromkeys(relay_pids, 0)
        peak = idle
        for number in range(plan.scale_rounds):
            order = list(urls)
            for mode in order[number % len(order) :] + order[: number % len(order)]:
                if mode == "direct":
                    runs[mode].merge(
                        await client.run(urls[mode], payloads, concurrency, requests=concurrency, stream=True)
                    )
                    continue
                cpu_before = cpu_seconds(relay_pids[mode])
                async with rss_peak(router_pid) as sampled:
                    run = await client.run(urls[mode], payloads, concurrency, requests=concurrency, stream=True)
                cpu_s[mode] += cpu_seconds(relay_pids[mode]) - cpu_before
                relayed[mode] += sum(sample.tokens for sample in run.samples)
                if mode == "routed":
                    peak = max(peak, sampled[0])
                runs[mode].merge(run)
        d, r, b = runs["direct"], runs["routed"], runs["bare"]
        per_chunk_us = {
            mode: cpu_s[mode] / relayed[mode] * 1e6 if relayed[mode] else float("nan") for mode in relay_pids
        }
        label = f"c{concurrency}"
        result.rows += [
            Row(f"{label} wall p50", "s", d.latency_ms(50) / 1000, r.latency_ms(50) / 1000, plot=True),
            Row(f"{label} wall p99", "s", d.latency_ms(99) / 1000, r.latency_ms(99) / 1000, plot=True),
            Row(
                f"{label} wall p99 through the bare relay (the floor)",
                "s",
                d.latency_ms(99) / 1000,
                b.latency_ms(99) / 1000,
            ),
            Row(
                f"{label} streams incomplete (no [DONE] or a chunk lost)",
                "",
                _incomplete(d, chunks),
                _incomplete(r, chunks),
            ),
            Row(f"{label} router RSS peak (idle {idle:.0f} MB)", "MB", None, peak),
            Row(
                f"{label} CPU per relayed chunk: bare relay → router",
                "µs",
                per_chunk_us["bare"],
                per_chunk_us["routed"],
            ),
        ]
        for mode, run in runs.items():
            if failures := _failures(run, chunks):
                result.notes.append(f"{label} {mode} incomplete streams: {failures}")
        result.targets.append(
            Target(
                f"scale {label}: streams incomplete, both ways",
                _incomplete(d, chunks) + _incomplete(r, chunks),
                "<=",
                0,
                "",
            )
        )
        if concurrency == 256:
            result.notes.append(
                f"c256: router CPU {cpu_s['routed']:.2f} s for {relayed['routed']:,} relayed chunks = {per_chunk_us['routed']:.1f} µs "
                f"per chunk (baseline before issue 16: {CPU_PER_CHUNK_BASELINE_US:.1f} µs; the bare relay: {per_chunk_us['bare']:.1f} µs)"
            )
            result.targets.append(
                Target(
                    "scale c256: router CPU per relayed chunk (≤ baseline / 3)",
                    per_chunk_us["routed"],
                    "<=",
                    CPU_PER_CHUNK_BASELINE_US / 3,
                    "µs",
                )
            )
        if concurrency == 1000:
            result.targets += [
                Target("scale c1000: routed p99 / direct p99", r.latency_ms(99) / d.latency_ms(99), "<=", 1.15, "x"),
                Target("scale c1000: router RSS growth idle → peak", peak - idle, "<=", 100.0, "MB"),
            ]
    return result


# --------------------------------------------------------------------------- many models


async def _poll(session: aiohttp.ClientSession, url: str, done: object, timeout_s: float) -> float:
    """Seconds until ``done(json)`` is true for ``GET url`` (any error counts as not yet)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
            async with session.get(url) as response:
                if response.status == 200 and done(await response.json()):  # type: ignore[operator]
                    return time.perf_counter() - started
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{url} not as expected after {timeout_s:g} s")


async def _router_with_models(
    hosts: HealthHosts, remote_models: int, plan: Plan, scratch: Path, binary: Path
) -> dict[str, float]:
    config = many_models_config(
        scratch / f"many-{remote_models}.toml", hosts.urls, remote_models, plan.many_llamacpp_models, binary
    )
    started = time.perf_counter()
    with running_service(config, scratch / "logs", wait_healthy=False) as service:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            await _poll(session, service.url + "/health", lambda _: True, 60)
            serving_s = time.perf_counter() - started

            def all_remotes_loaded(listing: dict[str, list[dict[str, str]]]) -> bool:
                return (
                    sum(card["status"] == "loaded" for card in listing["data"] if card["runtime"] == "remote")
                    == remote_models
                )

            await _poll(session, service.url + "/v1/models", all_remotes_loaded, 120)
            loaded_s = time.perf_counter() - started
            await asyncio.sleep(plan.many_settle_s)  # let start-up garbage go and every prober reach its interval
            rss = rss_mb(service.pid)
            hosts.reset()
            cpu_before, window_started = cpu_seconds(service.pid), time.perf_counter()
            await asyncio.sleep(plan.many_idle_window_s)
            window_s = time.perf_counter() - window_started
            idle_cpu_percent = (cpu_seconds(service.pid) - cpu_before) / window_s * 100
            probes = sum(hosts.requests)
            latencies = []
            for _ in range(plan.many_list_requests):
                began = time.perf_counter()
                async with session.get(service.url + "/v1/models") as response:
                    await response.read()
                latencies.append((time.perf_counter() - began) * 1000)
    return {
        "serving_s": serving_s,
        "loaded_s": loaded_s,
        "rss_mb": rss,
        "idle_cpu_percent": idle_cpu_percent,
        "probes_per_host_per_s": probes / len(hosts.urls) / window_s,
        "list_p50_ms": percentile(latencies, 50),
        "list_p99_ms": percentile(latencies, 99),
    }


async def many_models(plan: Plan, scratch: Path, binary: Path, health_interval_s: float) -> Result:
    """A baseline router (one remote model per host) against one with ``many_remote_models`` remote models."""
    hosts_count, remotes = plan.many_hosts, plan.many_remote_models
    result = Result(
        "many_models",
        f"Many models: {remotes} remote models on {hosts_count} hosts + {plan.many_llamacpp_models} llamacpp configured "
        f"(not loaded), vs a baseline of {hosts_count} remote (one per host); idle window {plan.many_idle_window_s:g} s",
    )
    async with HealthHosts(hosts_count) as hosts:
        base = await _router_with_models(hosts, hosts_count, plan, scratch, binary)
        full = await _router_with_models(hosts, remotes, plan, scratch, binary)
    per_model_mb = (full["rss_mb"] - base["rss_mb"]) / (remotes - hosts_count)
    probes_per_interval = {
        name: run["probes_per_host_per_s"] * health_interval_s for name, run in (("base", base), ("full", full))
    }
    both = f"{hosts_count} → {remotes} remote"
    result.rows = [
        Row(f"start-up to /health ({both})", "s", base["serving_s"], full["serving_s"]),
        Row(
            f"start-up until every remote model is loaded ({both})", "s", base["loaded_s"], full["loaded_s"], plot=True
        ),
        Row(f"/v1/models p50 ({both})", "ms", base["list_p50_ms"], full["list_p50_ms"], plot=True),
        Row(f"/v1/models p99 ({both})", "ms", base["list_p99_ms"], full["list_p99_ms"]),
        Row(f"router RSS, models loaded ({both})", "MB", base["rss_mb"], full["rss_mb"], plot=True),
        Row("router RSS per additional remote model", "MB", None, per_model_mb),
        Row(f"router idle CPU ({both})", "% of a core", base["idle_cpu_percent"], full["idle_cpu_percent"], plot=True),
        Row(
            f"health probes per host per interval ({both})",
            "",
            probes_per_interval["base"],
            probes_per_interval["full"],
        ),
    ]
    result.targets += [
        Target("many models: router RSS per additional remote model", per_model_mb, "<=", 0.1, "MB"),
        Target(
            f"many models: idle CPU with {remotes} remote models on {hosts_count} hosts",
            full["idle_cpu_percent"],
            "<=",
            2.0,
            "%",
        ),
        # A probe may fall either side of the window's edges: allow 10 % over one per interval.
        Target("many models: probes per host per health interval", probes_per_interval["full"], "<=", 1.1, ""),
    ]
    result.notes.append(
        f"the 'direct' column is the baseline router ({hosts_count} remote models), 'routed' the one with {remotes}; "
        f"health interval {health_interval_s:g} s (runtimes.remote.health_interval_s)"
    )
    return result
