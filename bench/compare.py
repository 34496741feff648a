"""Router CPU per request (or per relayed chunk) of two or more checkouts, side by side in one run.

    .venv/bin/python -m bench.compare /path/to/old-checkout /path/to/new-checkout [--kind json|sse|drip]

Absolute CPU figures drift by ±25 % over minutes on a shared VM, so a change is judged
here, not across two ``make bench`` runs: one instant upstream, the bare relay (the floor,
``bench.bare_relay``) and one router per checkout (each run with its own ``.venv`` or this
one's), measured in rotation, several rounds, medians printed. ``json``/``sse``: wrk at
concurrency 16 (SSE: 16 one-token chunks per stream); ``drip``: whole batches of 256
streams, 50 chunks 20 ms apart, CPU per relayed chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.harness import DRIP_ID, INSTANT_ID, bare_relay, cpu_seconds, instant_upstream, write_config
from bench.load import LoadClient, find_wrk, run_wrk
from bench.scale import drip_payloads
from tests.support.service import free_port, stop_tree, wait_for_http

CHAT = "/v1/chat/completions"
DRIP_STREAMS = 256


def checkout_python(checkout: Path) -> Path:
    """The checkout's own ``.venv`` python if it has one, else this one."""
    python = checkout / ".venv" / "bin" / "python"
    return python if python.exists() else Path(sys.executable)


def config_for(checkout: Path, config: Path) -> Path:
    """``config`` as ``checkout`` can read it: without ``usage_db`` for one from before the usage ledger
    (its config refuses unknown keys), so an old commit can still be compared."""
    knows = subprocess.run(
        [
            str(checkout_python(checkout)),
            "-c",
            "from inference_service.config import Settings as S; S.model_fields['usage_db']",
        ],
        cwd=checkout,
        capture_output=True,
    )
    if knows.returncode == 0:
        return config
    older = config.with_name(f"{config.stem}-{checkout.name}{config.suffix}")
    older.write_text(
        "".join(line for line in config.read_text().splitlines(keepends=True) if not line.startswith("usage_db"))
    )
    return older


@contextlib.contextmanager
def checkout_router(checkout: Path, config: Path, log: Path) -> Iterator[tuple[str, int]]:
    """``inference-service serve`` from ``checkout`` (its own code, its ``.venv`` if it has one)."""
    python = checkout_python(checkout)
    config = config_for(checkout, config)
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(python),
                "-m",
                "inference_service",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
            ],
            cwd=checkout,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health/ready", 120, process)
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_tree(process, 10.0)


async def cost(kind: str, url: str, pid: int, wrk: str | None, client: LoadClient, seconds: float) -> float:
    """Milliseconds of CPU per request (json, sse) or microseconds per relayed chunk (drip)."""
    before = cpu_seconds(pid)
    if kind == "drip":
        run = await client.run(url + CHAT, drip_payloads(50, 20), DRIP_STREAMS, requests=DRIP_STREAMS, stream=True)
        return (cpu_seconds(pid) - before) / max(sum(sample.tokens for sample in run.samples), 1) * 1e6
    payload = json.dumps(
        {
            "model": INSTANT_ID,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 16,
            "stream": kind == "sse",
        }
    ).encode()
    if wrk:
        requests = (await asyncio.to_thread(run_wrk, wrk, url + CHAT, payload, 16, seconds)).requests
    else:
        requests = (
            (await client.run(url + CHAT, [payload], 16, duration_s=seconds, stream=kind == "sse"))
            .throughput()
            .requests
        )
    return (cpu_seconds(pid) - before) / max(requests, 1) * 1e3


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkouts",
        nargs="+",
        type=Path,
        help="repository checkouts to compare (e.g. a git worktree of the old commit)",
    )
    parser.add_argument("--kind", choices=("json", "sse", "drip"), default="json")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0, help="per wrk run (json, sse)")
    args = parser.parse_args()
    wrk = find_wrk(install=False)
    unit = "µs per relayed chunk" if args.kind == "drip" else "ms CPU per request"
    model = DRIP_ID if args.kind == "drip" else INSTANT_ID
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch_dir, contextlib.ExitStack() as stack:
        scratch = Path(scratch_dir)
        upstream, _ = stack.enter_context(instant_upstream(scratch))
        targets = {"bare relay (floor)": stack.enter_context(bare_relay(upstream, scratch))}
        fields: dict[str, object] = {"runtime": "remote", "url": upstream, "parallel": 256, "preload": True}
        config = write_config(scratch / "router.toml", {model: fields}, queue_size=4096)
        for number, checkout in enumerate(args.checkouts):
            name = f"{number}: {checkout.resolve().name}"
            targets[name] = stack.enter_context(
                checkout_router(checkout.resolve(), config, scratch / f"router-{number}.log")
            )
        async with LoadClient() as client:
            for url, pid in targets.values():  # warm-up: pools, lazily built validators
                await cost(args.kind, url, pid, wrk, client, 1.0)
            figures: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (url, pid) in targets.items():
                    figures[name].append(await cost(args.kind, url, pid, wrk, client, args.seconds))
    print(f"{args.kind}: {unit}, median of {args.rounds} rounds (each round: every target once, in turn)")
    for name, values in figures.items():
        print(f"  {name:32s} {statistics.median(values):8.3f}   runs: {', '.join(f'{value:.3f}' for value in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
