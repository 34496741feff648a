"""``python -m bench`` (``make bench``): run every scenario, write and print the report.

Two phases, each with its own router process so neither's traffic colours the other:

1. a router in front of a real llama-server (the small default model): non-streaming
   latency, streaming TTFT and tokens/s, then cold start. "Direct" is the very
   llama-server child the router spawned, addressed on its own port.
2. a router in front of ``bench.upstream``, an upstream that answers instantly: router
   memory, then pure proxy capacity and the router's CPU time per request; then what
   tracing costs (``bench.tracing``: tracing off vs on, in routers of their own), and what API
   keys cost and fair share buys (``bench.tenants``).
3. scale (``bench.scale``): a router in front of the same upstream dripping its chunks
   (256 and 1,000 concurrent streams), then routers with 20 and 200 remote models on 20
   fake hosts.
4. continuity (``bench.continuity``): a conversation's next turn warm and after its model was
   stopped (unload + load, a swap).
5. affinity (``bench.affinity``): interleaved conversations over two replicas, cache-affine vs
   round-robin; then throughput under c8, one replica vs two.

Exit status 1 when a target fails, so a script can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from bench import affinity, continuity, report, scale, scenarios, swap, tenants, tracing
from bench.harness import (
    LLM_ID,
    bare_relay,
    drip_router_config,
    instant_router_config,
    instant_upstream,
    llama_setup,
    llm_router_config,
    max_parallel,
    router,
)
from bench.load import LoadClient, find_wrk
from bench.scenarios import Plan, Result
from inference_service.config import load_settings
from inference_service.provisioning.llamacpp import configured_binary
from inference_service.runtimes.llamacpp import API_KEY_ENV

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DIRECT_POLL_INTERVAL_S = 0.01
# Admission must never refuse benchmark traffic: every stream decodes in its own slot, and the
# instant upstream gets as many slots as the highest proxy concurrency.
LLM_PARALLEL = 8
PROXY_PARALLEL = 256
QUEUE_SIZE = 1024


def _child(router_url: str) -> tuple[str, dict[str, str]]:
    """The router's llama-server child: its URL, and the API key only the router holds (read
    from the child's environment, as its owner may) so direct traffic is served too."""
    card = httpx.get(f"{router_url}/v1/models/{LLM_ID}", timeout=10).json()
    if card.get("status") != "loaded" or not card.get("port"):
        raise RuntimeError(f"{LLM_ID} is not loaded in the router: {card}")
    key = psutil.Process(card["pid"]).environ()[API_KEY_ENV]
    return f"http://127.0.0.1:{card['port']}", {"Authorization": f"Bearer {key}"}


async def llm_phase(plan: Plan, scratch: Path, only: set[str]) -> list[Result]:
    setup = llama_setup(parallel=max(LLM_PARALLEL, *plan.stream_concurrency))
    config = llm_router_config(scratch / "llm.toml", setup, QUEUE_SIZE)
    results: list[Result] = []
    with router(config, scratch / "logs") as service:
        direct, auth = _child(service.url)
        async with LoadClient({direct: auth}) as client:
            if "latency" in only:
                print("bench: non-streaming latency ...", flush=True)
                results.append(await scenarios.nonstream_latency(client, direct, service.url, plan))
            if "streaming" in only:
                print("bench: streaming ...", flush=True)
                results.append(await scenarios.streaming(client, direct, service.url, plan))
        if "cold_start" in only:
            print("bench: cold start ...", flush=True)
            results.append(await scenarios.cold_start(service.url, setup, plan, DIRECT_POLL_INTERVAL_S))
    return results


async def proxy_phase(plan: Plan, scratch: Path, only: set[str], install_wrk: bool) -> list[Result]:
    results: list[Result] = []
    wrk = find_wrk(install=install_wrk) if "proxy" in only else None
    with instant_upstream(scratch / "logs") as (upstream_url, _), bare_relay(upstream_url, scratch / "logs") as bare:
        config = instant_router_config(scratch / "proxy.toml", upstream_url, PROXY_PARALLEL, QUEUE_SIZE)
        with router(config, scratch / "logs") as service:
            async with LoadClient() as client:
                memory: Result | None = None
                if "memory" in only:
                    print("bench: memory ...", flush=True)
                    memory = await scenarios.memory(client, service.url, service.pid, plan)
                    results.append(memory)
                if "proxy" in only:
                    print(f"bench: pure proxy capacity ({'wrk' if wrk else 'aiohttp client'}) ...", flush=True)
                    results.append(
                        await scenarios.proxy_capacity(client, upstream_url, service.url, service.pid, bare, plan, wrk)
                    )
                    if memory is not None:
                        scenarios.rss_after(memory, service.pid, "the capacity runs")
        if "tracing" in only:
            print("bench: tracing off vs on ...", flush=True)
            results.append(await tracing.tracing_cost(upstream_url, scratch, PROXY_PARALLEL, QUEUE_SIZE, plan))
        if "tenants" in only:
            print("bench: API keys (admission CPU) and fair share ...", flush=True)
            keyed = await tenants.admission_cpu(upstream_url, scratch, PROXY_PARALLEL, QUEUE_SIZE, plan)
            await tenants.fairness(upstream_url, scratch, keyed)
            results.append(keyed)
    return results


async def scale_phase(plan: Plan, scratch: Path, only: set[str]) -> list[Result]:
    results: list[Result] = []
    if "scale" in only:
        # As many slots as streams when the config allows it; beyond that admission queues the rest.
        parallel = min(max(plan.scale_concurrency), max_parallel())
        with (
            instant_upstream(scratch / "logs") as (upstream_url, _),
            bare_relay(upstream_url, scratch / "logs") as bare,
        ):
            # Room for two batches of streams (the client's idle pool closes lazily while the next batch
            # connects) and the bench's polling: 1,000 streams alone are over the default cap of 512.
            connections = 2 * max(plan.scale_concurrency) + 64
            config = drip_router_config(scratch / "scale.toml", upstream_url, parallel, QUEUE_SIZE, connections)
            with router(config, scratch / "logs") as service:
                async with LoadClient() as client:
                    print(f"bench: streaming at scale (parallel {parallel}) ...", flush=True)
                    result = await scale.streams_at_scale(client, upstream_url, service.url, service.pid, bare, plan)
                    result.notes.append(
                        f"the routed model has parallel = {parallel}: streams beyond it wait in admission"
                    )
                    results.append(result)
    if "many_models" in only:
        print("bench: many models on many hosts ...", flush=True)
        settings = load_settings()
        # The llamacpp models are never loaded: any executable satisfies the start-up check.
        binary = configured_binary(settings) or Path(sys.executable)
        results.append(await scale.many_models(plan, scratch, binary, settings.runtimes.remote.health_interval_s))
    return results


SCENARIOS = (
    "latency",
    "streaming",
    "cold_start",
    "memory",
    "proxy",
    "tracing",
    "tenants",
    "two_models",
    "continuity",
    "affinity",
    "scale",
    "many_models",
)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Router vs direct: latency, streaming, capacity, cold start, memory."
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests and shorter runs (development, busy machines)"
    )
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (default bench/results)")
    parser.add_argument(
        "--no-install", action="store_true", help="do not try to apt-get install wrk when it is missing"
    )
    parser.add_argument("--scale-chunks", type=int, help=f"scale: chunks per drip stream (default {Plan.scale_chunks})")
    parser.add_argument(
        "--scale-gap-ms", type=float, help=f"scale: ms between a stream's chunks (default {Plan.scale_gap_ms:g})"
    )
    parser.add_argument(
        "--scale-concurrency", help="scale: comma-separated concurrent stream counts (default 256,1000)"
    )
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if unknown := only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    plan = Plan.quick() if args.quick else Plan()
    if args.scale_chunks is not None:
        plan.scale_chunks = args.scale_chunks
    if args.scale_gap_ms is not None:
        plan.scale_gap_ms = args.scale_gap_ms
    if args.scale_concurrency:
        plan.scale_concurrency = tuple(int(value) for value in args.scale_concurrency.split(","))
    # A SIGTERM (timeout, CI cancel) unwinds like Ctrl-C, so every process we started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    info = {"date": datetime.now().strftime("%Y-%m-%d_%H%M%S"), **report.machine()}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="inference-bench-") as scratch:
        results: list[Result] = []
        if only & {"latency", "streaming", "cold_start"}:
            results += asyncio.run(llm_phase(plan, Path(scratch), only))
        if only & {"memory", "proxy", "tracing", "tenants"}:
            results += asyncio.run(proxy_phase(plan, Path(scratch), only, install_wrk=not args.no_install))
        if "two_models" in only:
            print("bench: two models, one slot ...", flush=True)
            results.append(asyncio.run(swap.two_models_one_slot(plan.swap_requests, Path(scratch))))
        if "continuity" in only:
            print("bench: continuity (a conversation across its model's stops) ...", flush=True)
            results.append(continuity.continuity(plan.continuity_rounds, Path(scratch)))
        if "affinity" in only:
            print(
                "bench: affinity (conversations over two replicas, affine vs round-robin; 1 vs 2 replicas) ...",
                flush=True,
            )
            results += affinity.affinity(
                plan.affinity_conversations, plan.affinity_turns, plan.affinity_throughput_rounds, Path(scratch)
            )
        if only & {"scale", "many_models"}:
            results += asyncio.run(scale_phase(plan, Path(scratch), only))
    info["load_average_at_end"] = [round(value, 2) for value in os.getloadavg()]
    info["duration_s"] = round(time.monotonic() - started, 1)
    plan_info = {**dataclasses.asdict(plan), "quick": args.quick, "scenarios": sorted(only)}
    json_path, text = report.write(results, info, plan_info, args.out)
    print(text)
    print(f"bench: wrote {json_path} (+ .md, .png) in {info['duration_s']:g} s")
    return 1 if any(not target.passed for result in results for target in result.targets) else 0


if __name__ == "__main__":
    sys.exit(main())
