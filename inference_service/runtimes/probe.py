"""Health probes for backends we do not own (remote hosts, Ollama), shared by every model on them.

A front router may list hundreds of models on a handful of hosts. Models on one host share
its health, so probing per model multiplies the traffic (and the router's idle CPU) by the
number of models per host for no extra information. A :class:`HealthProber` probes each
distinct health URL at most once per interval whatever the number of models watching it,
through one HTTP client for the whole process (building an httpx client loads the CA bundle:
tens of ms of blocked event loop, and ~1 MB of memory each).

Probes go through aiohttp, like the data path: a keep-alive GET costs a fraction of the CPU
it costs through httpx (measured by ``make bench`` ``many_models``: with httpx the probes
alone kept an idle router with 200 remote models above 2 % of a core). Ollama's native API
(used when a model loads or unloads, not per interval) keeps httpx, through :attr:`client`.

Probes are keyed by URL *and* request headers: two models on one host with different API
keys are probed separately, since a key the host refuses is a problem of that model only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import httpx

_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class _Watch:
    """The one task probing a URL every interval for all the models waiting for it to go down."""

    task: asyncio.Task[None] | None = None
    down: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    watchers: int = 0


class HealthProber:
    """Shared probes: :meth:`check` answers now, :meth:`wait_until_down` watches every ``interval_s``.

    A result younger than the interval is reused by :meth:`check`, and concurrent checks of
    one URL share a single request, so 10 models on a host starting together cost one probe.
    The HTTP client is created on first use and closed when the last holder releases it.
    """

    def __init__(self, interval_s: float, timeout_s: float = 3.0) -> None:
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._session: aiohttp.ClientSession | None = None
        self._holders = 0
        self._results: dict[_Key, tuple[float, str | None]] = {}
        self._in_flight: dict[_Key, asyncio.Future[str | None]] = {}
        self._watches: dict[_Key, _Watch] = {}

    # ----------------------------------------------------------------- the shared client

    @property
    def client(self) -> httpx.AsyncClient:
        """The process's one client for control-plane calls that are not probes (Ollama's native API)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout_s)
        return self._client

    @property
    def session(self) -> aiohttp.ClientSession:
        """The one aiohttp session every probe goes through."""
        if self._session is None:
            # Idle connections are dropped before the usual 5 s server keep-alive, so a probe never
            # goes out on a socket the host is closing at that moment (a false "down").
            connector = aiohttp.TCPConnector(keepalive_timeout=4)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
        return self._session

    def hold(self) -> None:
        """A runtime starts using the prober; pair with :meth:`release`."""
        self._holders += 1

    async def release(self) -> None:
        """A runtime is done with the prober. The last one out ends every watch and probe (only
        stopped models were waiting on them) and closes the client; the next holder starts afresh."""
        self._holders = max(0, self._holders - 1)
        if self._holders:
            return
        for watch in self._watches.values():
            watch.down.cancel()
            if watch.task is not None:
                watch.task.cancel()
        for pending in self._in_flight.values():
            pending.cancel()
        self._watches.clear()
        self._in_flight.clear()
        self._results.clear()
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    # ----------------------------------------------------------------- probes

    async def check(self, url: str, headers: Mapping[str, str] | None = None) -> str | None:
        """None when ``url`` answers 200, else why not - from a probe at most one interval old."""
        key = _key(url, headers)
        cached = self._results.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.interval_s:
            return cached[1]
        return await self._probe(key)

    async def _probe(self, key: _Key) -> str | None:
        """Probe now, or join the probe of the same key already on its way."""
        if (pending := self._in_flight.get(key)) is None:
            pending = asyncio.ensure_future(self._request(key))
            self._in_flight[key] = pending
            pending.add_done_callback(lambda done: self._in_flight.get(key) is done and self._in_flight.pop(key))
        return await asyncio.shield(pending)

    async def _request(self, key: _Key) -> str | None:
        url, headers = key
        try:
            async with self.session.get(url, headers=dict(headers)) as response:
                await response.read()
                problem = None if response.status == 200 else f"{url} answered {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            problem = f"{url} unreachable: {error.__class__.__name__}: {error or 'timed out'}"
        self._results[key] = (time.monotonic(), problem)
        return problem

    async def wait_until_down(self, url: str, headers: Mapping[str, str] | None = None) -> str:
        """Return why, as soon as a probe of ``url`` (one every interval, shared) fails."""
        key = _key(url, headers)
        watch = self._watches.get(key)
        if watch is None:
            watch = self._watches[key] = _Watch()
            watch.task = asyncio.create_task(self._watch(key, watch), name=f"probe:{url}")
        watch.watchers += 1
        try:
            return await asyncio.shield(watch.down)
        finally:
            watch.watchers -= 1
            if watch.watchers == 0 and self._watches.get(key) is watch:
                del self._watches[key]
                assert watch.task is not None
                watch.task.cancel()

    async def _watch(self, key: _Key, watch: _Watch) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if (problem := await self._probe(key)) is not None:
                if self._watches.get(key) is watch:  # the next watcher starts a fresh watch
                    del self._watches[key]
                with contextlib.suppress(asyncio.InvalidStateError):
                    watch.down.set_result(problem)
                return


def _key(url: str, headers: Mapping[str, str] | None) -> _Key:
    return url, tuple(sorted((headers or {}).items()))
