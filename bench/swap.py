"""Scenario "two models, one slot": interleaved traffic for two models that cannot be resident together.

``max_loaded_models = 1``, requests alternating A, B, A, B ... from 8 closed-loop
workers. The same router runs twice in one bench: with the anti-thrash bound
(``swap_max_wait_s``, the default) and with ``swap_max_wait_s = 0``, a per-request
swapper (the baseline, shown in the report's "direct" column). Reported: loads per 100
requests (from ``inference_model_loads_total``), p50/p95 latency, throughput, failures.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from bench.harness import write_config
from bench.load import LoadClient
from bench.scenarios import CHAT, Result, Row, Target, chat_payloads
from inference_service.config import load_settings
from inference_service.provisioning.llamacpp import configured_binary
from tests.support.service import running_service

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")  # the repo's two tiny models: two different llama-servers
CONCURRENCY = 8
DEFAULT_SWAP_MAX_WAIT_S = 10.0
_LOADS = re.compile(r'^inference_model_loads_total\{model="[^"]+"\} ([0-9.e+]+)$', re.MULTILINE)


def _config(path: Path, swap_max_wait_s: float) -> Path:
    settings = load_settings()
    binary = configured_binary(settings)
    if binary is None:
        raise SystemExit("bench: no llama-server binary: run `make setup`")
    models: dict[str, dict[str, object]] = {}
    for model_id in MODELS:
        model_path = settings.model_path(settings.models[model_id])
        if not model_path.is_file():
            raise SystemExit(f"bench: {model_path} missing: run `inference-service models pull {model_id}`")
        models[model_id] = {"runtime": "llamacpp", "path": str(model_path), "ctx_size": 1024, "parallel": 4}
    capacity: dict[str, object] = {
        "max_loaded_models": 1,
        "swap_max_wait_s": swap_max_wait_s,
        "kv_cache_dir": str(path.parent / f"kv-{path.stem}"),  # each run's saved slots are its own
    }
    return write_config(path, models, queue_size=256, binary=binary, top_level=capacity)


def _loads(url: str) -> int:
    return int(sum(float(value) for value in _LOADS.findall(httpx.get(f"{url}/metrics", timeout=10).text)))


async def two_models_one_slot(requests: int, scratch: Path) -> Result:
    payloads = [payload for model_id in MODELS for payload in chat_payloads(model_id, 8, stream=False)[:1]]
    measured: dict[str, dict[str, float]] = {}
    failures: list[str] = []
    for label, swap_max_wait_s in (("baseline", 0.0), ("ours", DEFAULT_SWAP_MAX_WAIT_S)):
        config = _config(scratch / f"swap-{label}.toml", swap_max_wait_s)
        # Nothing is preloaded (the first request loads its model), so /health/ready - "a model
        # is loaded" - would never answer: /health says the router serves.
        with running_service(config, scratch / "logs") as service:
            url = service.url + CHAT
            async with LoadClient() as client:
                before = _loads(service.url)
                run = await client.run(url, payloads, CONCURRENCY, requests=requests)
                loads = _loads(service.url) - before
        measured[label] = {
            "loads_per_100": loads / requests * 100,
            "p50": run.latency_ms(50),
            "p95": run.latency_ms(95),
            "rps": len(run.ok) / run.wall_s,
        }
        if run.errors:
            failures.append(f"{label}: {run.errors} of {requests} requests failed")
    base, ours = measured["baseline"], measured["ours"]
    result = Result(
        "two_models",
        f"Two models, one slot: {requests} requests alternating A,B at concurrency {CONCURRENCY} "
        "(direct = per-request swapper, swap_max_wait_s = 0; routed = ours)",
    )
    result.rows = [
        Row("loads per 100 requests", "loads", base["loads_per_100"], ours["loads_per_100"], plot=True),
        Row("latency p50", "ms", base["p50"], ours["p50"], plot=True),
        Row("latency p95", "ms", base["p95"], ours["p95"], plot=True),
        Row("throughput", "req/s", base["rps"], ours["rps"]),
    ]
    result.targets.append(
        Target("two models, one slot: loads per 100 requests", ours["loads_per_100"], "<=", 25.0, "loads")
    )
    result.notes = failures or [f"the baseline loaded {base['loads_per_100']:.0f} times per 100 requests"]
    return result
