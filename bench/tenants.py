"""``tenants``: what API keys cost the router, and what fair share buys a light key.

1. **Admission CPU.** Two routers in front of the instant upstream, measured in turn (ABBA) in
   one run: one without keys (every request anonymous, as before keys existed: the *direct*
   column) and one with :data:`KEYS` keys configured, each with all three limits on (never
   reached), its requests carrying one of them (the *routed* column). The router's CPU time per
   JSON request at c16: the gate (a digest lookup, the route's scope, the limits' buckets), the
   ``x-ratelimit-*`` headers and the per-key ledger. Target: within 5 %.
2. **Fairness.** A one-slot model on the drip upstream (every request takes the same service
   time): a *heavy* key queues :data:`HEAVY_QUEUED` streams behind the one running, then a
   *light* key sends one. Its wait, in service times (the median gap between the heavy key's
   completions), and how many heavy requests were served meanwhile; on a FIFO it would wait
   for all 24. Target: served within 3 service times.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from pathlib import Path

import aiohttp

from bench.harness import DRIP_ID, INSTANT_ID, cpu_seconds, drip_router_config, instant_router_config, router
from bench.load import LoadClient
from bench.scenarios import CHAT, Plan, Result, Row, Target, chat_payloads
from tests.support.prometheus import sample

KEYS = 100
CONCURRENCY = 16
ROUNDS = 6
HEAVY_QUEUED = 24
#: The drip of one fairness request: 10 chunks 20 ms apart, a service time of ~0.2 s.
FAIR_CHUNKS, FAIR_GAP_MS = 10, 20.0
#: Limits every benchmark key has, far above what the benchmark sends: checked on every request, never hit.
UNREACHED = {"max_concurrent": 10_000, "requests_per_minute": 10**9, "tokens_per_minute": 10**12}


def _with_keys(config: Path, keys: dict[str, dict[str, object]]) -> Path:
    """``config`` with ``[keys.<name>]`` tables appended (the bench's config writer has flat tables only)."""
    tables = []
    for name, fields in keys.items():
        tables.append(f"\n[keys.{name}]")
        tables += [f"{field} = {json.dumps(value)}" for field, value in fields.items()]
    config.write_text(config.read_text() + "\n".join(tables) + "\n")
    return config


def _limited_keys() -> dict[str, dict[str, object]]:
    return {
        f"key-{number:03d}": {"key": f"secret-{number:03d}", "scopes": ["inference"], **UNREACHED}
        for number in range(KEYS)
    }


async def _cpu_ms_per_request(client: LoadClient, url: str, pid: int, payloads: list[bytes], seconds: float) -> float:
    before = cpu_seconds(pid)
    run = await client.run(url + CHAT, payloads, CONCURRENCY, duration_s=seconds)
    if run.errors:
        failed = next(sample for sample in run.samples if not sample.ok)
        raise RuntimeError(f"{url}: {run.errors} requests failed, e.g. {failed.error}")
    return (cpu_seconds(pid) - before) / max(len(run.ok), 1) * 1000


async def admission_cpu(upstream_url: str, scratch: Path, parallel: int, queue_size: int, plan: Plan) -> Result:
    result = Result(
        "tenants",
        f"API keys: no key (direct column) vs {KEYS} keys with limits (routed column): router CPU per JSON "
        f"request, c{CONCURRENCY}, {ROUNDS} rounds of {plan.proxy_duration_s / 2:g} s each way, medians; "
        "then a light key's wait under a heavy key's flood",
    )
    open_config = instant_router_config(scratch / "tenants-open.toml", upstream_url, parallel, queue_size)
    keyed_config = _with_keys(
        instant_router_config(scratch / "tenants-keyed.toml", upstream_url, parallel, queue_size), _limited_keys()
    )
    payloads = chat_payloads(INSTANT_ID, 8, stream=False)
    with router(open_config, scratch / "logs") as open_router, router(keyed_config, scratch / "logs") as keyed:
        key = {"Authorization": f"Bearer secret-{KEYS // 2:03d}"}
        targets = {"open": (open_router.url, open_router.pid), "keyed": (keyed.url, keyed.pid)}
        costs: dict[str, list[float]] = {"open": [], "keyed": []}
        async with LoadClient({keyed.url: key}) as client:
            for url, pid in targets.values():  # warm-up: pools, lazily built validators, label children
                await _cpu_ms_per_request(client, url, pid, payloads, 1.0)
            for number in range(ROUNDS):
                for mode in targets if number % 2 == 0 else reversed(targets):
                    url, pid = targets[mode]
                    costs[mode].append(await _cpu_ms_per_request(client, url, pid, payloads, plan.proxy_duration_s / 2))
    open_ms, keyed_ms = statistics.median(costs["open"]), statistics.median(costs["keyed"])
    result.rows.append(Row(f"router CPU per request, {KEYS} keys with limits", "ms", open_ms, keyed_ms, True))
    result.targets.append(
        Target(f"tenants: router CPU per request with {KEYS} keys / without", keyed_ms / open_ms, "<=", 1.05, "x")
    )
    result.notes.append(
        "the keyed router's requests pass the gate (digest lookup, route scope, three buckets), carry the "
        "x-ratelimit-* headers and count in the per-key ledger and metrics; both routers keep the ledger; "
        "µs per request by round, without keys: "
        + ", ".join(f"{value * 1000:.0f}" for value in costs["open"])
        + "; with: "
        + ", ".join(f"{value * 1000:.0f}" for value in costs["keyed"])
    )
    return result


async def _timed_stream(session: aiohttp.ClientSession, url: str, key: str, payload: bytes) -> tuple[float, float]:
    """(sent, ended) of one streamed request, on the monotonic clock."""
    sent = time.monotonic()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with session.post(url + CHAT, data=payload, headers=headers) as response:
        if response.status != 200:
            raise RuntimeError(f"fairness: HTTP {response.status}: {(await response.read())[:200]!r}")
        await response.read()
    return sent, time.monotonic()


async def fairness(upstream_url: str, scratch: Path, result: Result) -> None:
    """Adds the fairness rows and target to ``result``."""
    keys: dict[str, dict[str, object]] = {
        "heavy": {"key": "k-heavy", "scopes": ["inference"]},
        "light": {"key": "k-light", "scopes": ["inference"]},
        "ops": {"key": "k-ops", "scopes": ["read"]},
    }
    config = _with_keys(drip_router_config(scratch / "fairness.toml", upstream_url, 1, 4 * HEAVY_QUEUED, 512), keys)
    payload = json.dumps(
        {
            "model": DRIP_ID,
            "messages": [{"role": "user", "content": "drip"}],
            "max_tokens": FAIR_CHUNKS,
            "stream": True,
            "drip_ms": FAIR_GAP_MS,
        }
    ).encode()
    with router(config, scratch / "logs") as service:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            heavy = [
                asyncio.create_task(_timed_stream(session, service.url, "k-heavy", payload))
                for _ in range(HEAVY_QUEUED + 1)
            ]
            while True:  # the flood is in: one running, the rest queued
                async with session.get(service.url + "/metrics", headers={"Authorization": "Bearer k-ops"}) as reply:
                    if sample(await reply.text(), "inference_queue_depth", model=DRIP_ID) == HEAVY_QUEUED:
                        break
                await asyncio.sleep(0.02)
            light_sent, light_ended = await _timed_stream(session, service.url, "k-light", payload)
            heavy_ended = sorted(ended for _, ended in await asyncio.gather(*heavy))
    service_s = statistics.median(later - earlier for earlier, later in itertools.pairwise(heavy_ended))
    waited = (light_ended - light_sent) / service_s
    served_meanwhile = sum(light_sent < ended < light_ended for ended in heavy_ended)
    result.rows.append(
        Row(f"light key's wait behind {HEAVY_QUEUED} queued heavy requests", "service times", None, waited)
    )
    result.rows.append(Row("heavy requests served while the light one waited", "requests", None, served_meanwhile))
    result.targets.append(Target("fairness: light key served within", waited, "<=", 3.0, "service times"))
    result.notes.append(
        f"fairness: a one-slot model, every request {FAIR_CHUNKS} chunks {FAIR_GAP_MS:g} ms apart "
        f"(median service time {service_s * 1000:.0f} ms); on a FIFO the light key would wait ~{HEAVY_QUEUED + 1}"
    )
