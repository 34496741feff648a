"""``tracing``: what traces cost the router - tracing off against tracing on, every request sampled.

Two routers in front of the same instant upstream, measured in turn (ABBA) in one run: one
without tracing (the default), one exporting every trace (``OTEL_TRACES_SAMPLER=always_on``)
to a real OTLP/HTTP receiver in the bench process (``tests/support/otlp.py``). The router's
CPU time per JSON request and per streamed request of ``TRACE_CHUNKS`` chunks gives the
added cost per request, and - from the streamed requests' extra cost over the JSON ones -
per relayed chunk. In the table, *direct* is tracing off and *routed* tracing on.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.harness import INSTANT_ID, cpu_seconds, instant_router_config, router
from bench.load import LoadClient
from bench.scenarios import CHAT, Plan, Result, Row, chat_payloads
from tests.support.otlp import otlp_receiver

#: Chunks per streamed response: enough that a cost per chunk stands out of the cost per request.
TRACE_CHUNKS = 64
CONCURRENCY = 16
ROUNDS = 4


async def _cpu_ms_per_request(
    client: LoadClient, url: str, pid: int, payloads: list[bytes], stream: bool, seconds: float
) -> float:
    before = cpu_seconds(pid)
    run = await client.run(url + CHAT, payloads, CONCURRENCY, duration_s=seconds, stream=stream)
    return (cpu_seconds(pid) - before) / max(len(run.ok), 1) * 1000


async def _measure(
    targets: dict[str, tuple[str, int]], kinds: dict[str, list[bytes]], seconds: float
) -> dict[tuple[str, str], list[float]]:
    """CPU ms per request, ``ROUNDS`` runs of each kind against each target, in turn (ABBA)."""
    costs: dict[tuple[str, str], list[float]] = {(kind, mode): [] for kind in kinds for mode in targets}
    async with LoadClient() as client:
        for kind, payloads in kinds.items():  # warm-up: pools, lazily built validators, the exporter
            for url, pid in targets.values():
                await _cpu_ms_per_request(client, url, pid, payloads, kind != "json", 1.0)
        for number in range(ROUNDS):
            order = list(targets) if number % 2 == 0 else list(reversed(targets))
            for kind, payloads in kinds.items():
                for mode in order:
                    url, pid = targets[mode]
                    costs[kind, mode].append(
                        await _cpu_ms_per_request(client, url, pid, payloads, kind != "json", seconds)
                    )
    return costs


async def tracing_cost(upstream_url: str, scratch: Path, parallel: int, queue_size: int, plan: Plan) -> Result:
    result = Result(
        "tracing",
        f"Tracing off (direct column) vs on, 100 % sampled (routed column): router CPU, c{CONCURRENCY}, "
        f"{ROUNDS} rounds of {plan.proxy_duration_s / 2:g} s each way, medians",
    )
    kinds = {
        "json": chat_payloads(INSTANT_ID, 8, stream=False),
        f"sse ×{TRACE_CHUNKS} chunks": chat_payloads(INSTANT_ID, TRACE_CHUNKS, stream=True),
    }
    config = instant_router_config(scratch / "tracing.toml", upstream_url, parallel, queue_size)
    with otlp_receiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_SAMPLER": "always_on"}
        with router(config, scratch / "logs") as off, router(config, scratch / "logs", env=env) as on:
            targets = {"off": (off.url, off.pid), "on": (on.url, on.pid)}
            costs = await _measure(targets, kinds, plan.proxy_duration_s / 2)
        spans = len(receiver.spans())
    median = {key: statistics.median(values) for key, values in costs.items()}
    for kind in kinds:
        result.rows.append(Row(f"{kind} router CPU per request", "ms", median[kind, "off"], median[kind, "on"], True))
    added = {kind: median[kind, "on"] - median[kind, "off"] for kind in kinds}
    json_added, stream_added = added.values()
    result.rows.append(
        Row("added CPU per streamed chunk", "µs", None, (stream_added - json_added) / TRACE_CHUNKS * 1000)
    )
    result.notes += [
        f"added CPU per request: json {json_added * 1000:.0f} µs, streamed {stream_added * 1000:.0f} µs "
        f"(per chunk: the streamed request's extra over the json one, / {TRACE_CHUNKS})",
        f"the receiver got {spans:,} spans: each request is three (SERVER, admission, CLIENT), however long its stream",
    ]
    return result
