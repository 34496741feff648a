"""The shared health prober: one probe per host and interval, whatever the number of models on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from inference_service.config import ModelConfig
from inference_service.runtimes.base import RuntimeStartError
from inference_service.runtimes.ollama import OllamaRuntime
from inference_service.runtimes.probe import HealthProber
from inference_service.runtimes.remote import RemoteRuntime
from tests.support.health_hosts import HealthHosts
from tests.support.ollama_server import OllamaTestServer
from tests.unit.runtimes.conftest import PULLED

INTERVAL_S = 0.1


@pytest.fixture
async def hosts() -> AsyncIterator[HealthHosts]:
    async with HealthHosts(2) as servers:
        yield servers


def remote(number: int, url: str, api_key: str | None = None) -> ModelConfig:
    return ModelConfig(id=f"remote-{number}", runtime="remote", url=url, api_key=api_key)


async def test_ten_models_on_one_host_starting_together_cost_one_probe(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[0]), INTERVAL_S, prober) for n in range(10)]
    await asyncio.gather(*(runtime.start() for runtime in runtimes))
    assert hosts.requests == [1, 0]
    await asyncio.gather(*(runtime.stop() for runtime in runtimes))


async def test_watching_models_probe_each_host_once_per_interval(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[n % 2]), INTERVAL_S, prober) for n in range(20)]
    for runtime in runtimes:
        await runtime.start()
    watchers = [asyncio.create_task(runtime.wait_until_down()) for runtime in runtimes]
    hosts.reset()
    await asyncio.sleep(10.5 * INTERVAL_S)
    assert all(9 <= count <= 11 for count in hosts.requests), hosts.requests  # not 10 models x 10 intervals
    for watcher in watchers:
        watcher.cancel()
    await asyncio.gather(*(runtime.stop() for runtime in runtimes))


async def test_every_model_on_a_host_hears_when_it_goes_down(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[n % 2]), INTERVAL_S, prober) for n in range(6)]
    for runtime in runtimes:
        await runtime.start()
    watchers = [asyncio.create_task(runtime.wait_until_down()) for runtime in runtimes]
    await asyncio.sleep(1.5 * INTERVAL_S)
    hosts.status[1] = 503
    down = await asyncio.wait_for(asyncio.gather(*watchers[1::2]), timeout=5 * INTERVAL_S)
    assert down == [f"{hosts.urls[1]}/health answered 503"] * 3
    assert not any(watcher.done() for watcher in watchers[0::2])  # the healthy host's models keep serving
    for watcher in watchers[0::2]:
        watcher.cancel()
    await asyncio.gather(*(runtime.stop() for runtime in runtimes))


async def test_a_model_started_after_its_host_went_down_is_refused_and_later_recovers(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    hosts.status[0] = 503
    runtime = RemoteRuntime(remote(0, hosts.urls[0]), INTERVAL_S, prober)
    with pytest.raises(RuntimeStartError, match="answered 503"):
        await runtime.start()
    hosts.status[0] = 200
    await asyncio.sleep(INTERVAL_S)  # a failure is reused for at most one interval
    endpoint = await runtime.start()
    assert endpoint.base_url == hosts.urls[0]
    await runtime.stop()


async def test_models_with_different_api_keys_are_probed_separately(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[0], api_key=f"key-{n % 2}"), INTERVAL_S, prober) for n in range(4)]
    await asyncio.gather(*(runtime.start() for runtime in runtimes))
    assert hosts.requests[0] == 2
    await asyncio.gather(*(runtime.stop() for runtime in runtimes))


async def test_the_last_model_to_stop_closes_the_shared_client_and_ends_the_watch(hosts: HealthHosts) -> None:
    prober = HealthProber(INTERVAL_S)
    first, second = (RemoteRuntime(remote(n, hosts.urls[0]), INTERVAL_S, prober) for n in range(2))
    await first.start()
    await second.start()
    client = prober.client
    session = prober.session
    watcher = asyncio.create_task(first.wait_until_down())
    await asyncio.sleep(0)
    await first.stop()
    assert not client.is_closed and not session.closed
    await second.stop()
    assert client.is_closed and session.closed
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(watcher, timeout=1)
    hosts.reset()
    await asyncio.sleep(2 * INTERVAL_S)
    assert hosts.requests == [0, 0]  # no probe outlives the models


async def test_ollama_models_share_one_http_client(ollama: OllamaTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Today's regression: a new httpx client (its CA bundle: tens of ms of blocked loop) per call."""
    built: list[httpx.AsyncClient] = []
    original_init = httpx.AsyncClient.__init__

    def counting_init(self: httpx.AsyncClient, *args: object, **kwargs: object) -> None:
        built.append(self)
        original_init(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx.AsyncClient, "__init__", counting_init)
    prober = HealthProber(INTERVAL_S)
    models = [
        OllamaRuntime(
            ModelConfig(id=f"m{n}", runtime="ollama", ollama_model=PULLED), ollama.url, INTERVAL_S, 10, prober=prober
        )
        for n in range(3)
    ]
    for model in models:
        await model.start()
    watchers = [asyncio.create_task(model.wait_until_down()) for model in models]
    await asyncio.sleep(3.5 * INTERVAL_S)
    for watcher in watchers:
        watcher.cancel()
    for model in models:
        await model.stop()
    assert len(built) == 1
    assert len(ollama.requests_to("/api/version")) <= 3 + 4  # one per start, then one per interval for all three
