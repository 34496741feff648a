"""Load generation: an aiohttp closed-loop client (per-request samples) and ``wrk`` (raw capacity).

aiohttp rather than httpx: httpx 0.28's default transport tops out around 220 req/s on
these machines, far below what the router itself can do, so it would measure the client.
For pure proxy capacity ``wrk`` is better still - it costs a fraction of a Python client's
CPU, which matters on a 2-core box where the client, the router and the upstream share
the cores - so it is used when installed and the Python client is the fallback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

# A streamed chunk that carries generated text (llama-server's first chunk has "content":null).
_TOKEN_MARK = b'"content":"'
_DONE = b"data: [DONE]"


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Sample:
    """One request as the client saw it."""

    latency_s: float
    ok: bool  # HTTP 200 and, when streamed, ended by ``data: [DONE]``
    ttft_s: float | None = None  # streaming: until the first chunk carrying text
    tokens: int = 0  # streaming: chunks carrying text (llama-server sends one per token)
    decode_s: float = 0.0  # streaming: first to last text chunk
    error: str | None = None  # why not ok: "HTTP 503", "no [DONE]", an exception class


@dataclass
class LoadResult:
    """The samples of one load phase (or several phases of the same kind, merged)."""

    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0

    def merge(self, other: LoadResult) -> None:
        self.samples += other.samples
        self.wall_s += other.wall_s

    @property
    def ok(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.ok]

    @property
    def errors(self) -> int:
        return len(self.samples) - len(self.ok)

    def latency_ms(self, q: float) -> float:
        return percentile([s.latency_s * 1000 for s in self.ok], q)

    def ttft_ms(self, q: float) -> float:
        return percentile([s.ttft_s * 1000 for s in self.ok if s.ttft_s is not None], q)

    @property
    def tokens_per_s(self) -> float:
        """Aggregate generated tokens per wall-clock second (what a server delivers under this load)."""
        return sum(s.tokens for s in self.ok) / self.wall_s if self.wall_s else float("nan")

    @property
    def stream_decode_tokens_per_s(self) -> float:
        """Median per-stream decode rate, after the first token (what one client sees)."""
        return percentile([(s.tokens - 1) / s.decode_s for s in self.ok if s.tokens > 1 and s.decode_s > 0], 50)

    def throughput(self) -> Throughput:
        return Throughput(
            requests=len(self.ok),
            errors=self.errors,
            wall_s=self.wall_s,
            p50_ms=self.latency_ms(50),
            p99_ms=self.latency_ms(99),
        )


@dataclass
class Throughput:
    """A capacity run's summary, whichever tool produced it."""

    requests: int
    errors: int
    wall_s: float
    p50_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s else float("nan")


class LoadClient:
    """A closed-loop client: ``concurrency`` workers, each sending its next request when the last one ends.

    One keep-alive session for the whole benchmark, so interleaving direct and routed
    requests one at a time does not add a TCP handshake to every measurement.
    """

    def __init__(self, headers: Mapping[str, Mapping[str, str]] | None = None) -> None:
        """``headers``: extra request headers per base URL (a router's child wants its API key)."""
        self._session: aiohttp.ClientSession | None = None
        self._extra_headers = dict(headers or {})

    async def __aenter__(self) -> LoadClient:
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout: reusing one the
        # server is closing at that moment fails the request ("Server disconnected"), which
        # happened to whichever side idled while the other ran a long batch (scale scenario).
        connector = aiohttp.TCPConnector(limit=0, force_close=False, keepalive_timeout=4)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, url: str) -> dict[str, str]:
        extra = next((h for base, h in self._extra_headers.items() if url.startswith(base)), {})
        return {"Content-Type": "application/json", **extra}

    async def _one(self, url: str, headers: Mapping[str, str], payload: bytes, stream: bool) -> Sample:
        assert self._session is not None
        started = time.perf_counter()
        first: float | None = None
        last = started
        tokens = 0
        try:
            async with self._session.post(url, data=payload, headers=headers) as response:
                done = not stream
                if response.status != 200:
                    detail = (await response.read())[:160].decode(errors="replace")
                    return Sample(time.perf_counter() - started, ok=False, error=f"HTTP {response.status}: {detail}")
                if stream:
                    async for line in response.content:
                        if line.startswith(b"data: ") and _TOKEN_MARK in line:
                            last = time.perf_counter()
                            first = first or last
                            tokens += 1
                        elif line.startswith(_DONE):
                            done = True
                else:
                    await response.read()
                ok, error = done, None if done else "no [DONE]"
        except (TimeoutError, aiohttp.ClientError, OSError) as exception:
            ok, error = False, f"{exception.__class__.__name__}: {exception}"[:200]
        ended = time.perf_counter()
        return Sample(
            latency_s=ended - started,
            ok=ok,
            ttft_s=None if first is None else first - started,
            tokens=tokens,
            decode_s=0.0 if first is None else last - first,
            error=error,
        )

    async def run(
        self,
        url: str,
        payloads: Sequence[bytes],
        concurrency: int,
        *,
        requests: int | None = None,
        duration_s: float | None = None,
        stream: bool = False,
    ) -> LoadResult:
        """Send ``requests`` requests in total, or keep sending for ``duration_s``; payloads rotate."""
        assert (requests is None) != (duration_s is None), "give exactly one of requests / duration_s"
        counter = iter(range(requests if requests is not None else 2**62))
        result = LoadResult()
        started = time.perf_counter()
        deadline = started + duration_s if duration_s is not None else float("inf")
        headers = self._headers(url)

        async def worker() -> None:
            for number in counter:
                if time.perf_counter() >= deadline:
                    return
                result.samples.append(await self._one(url, headers, payloads[number % len(payloads)], stream))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
        return result


# --------------------------------------------------------------------------- wrk

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {{"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,"p50_us":%d,"p99_us":%d}}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def find_wrk(install: bool) -> str | None:
    """The wrk binary; with ``install``, try ``apt-get install wrk`` once (root only) when it is missing."""
    if path := shutil.which("wrk"):
        return path
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: wrk not found, trying `apt-get install -y wrk` (falls back to the Python client)", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, timeout=300, check=False)
    return shutil.which("wrk")


def run_wrk(wrk: str, url: str, payload: bytes, concurrency: int, duration_s: float) -> Throughput:
    """One wrk run on one thread (a thread per core would steal CPU from the router being measured)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(_WRK_SCRIPT.format(body=payload.decode()))
        completed = subprocess.run(
            [wrk, "-t1", f"-c{concurrency}", f"-d{duration_s:g}s", "--timeout", "10s", "-s", str(script), url],
            capture_output=True,
            text=True,
            timeout=duration_s + 60,
            check=False,
        )
    line = next((line for line in completed.stdout.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}): {completed.stderr.strip() or completed.stdout.strip()}"
        )
    summary = json.loads(line.removeprefix("WRK_JSON "))
    errors = summary["status_errors"] + summary["socket_errors"]
    return Throughput(
        requests=summary["requests"] - summary["status_errors"],
        errors=errors,
        wall_s=summary["duration_us"] / 1e6,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
    )
