"""The shared health prober: one probe per host and interval, whatever the number of models on it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from inference_service.config import ModelConfig
from inference_service.runtimes.base import Runtime, RuntimeStartError
from inference_service.runtimes.ollama import OllamaRuntime
from inference_service.runtimes.probe import HealthProber
from inference_service.runtimes.remote import RemoteRuntime
from tests.support.configs import eventually
from tests.support.health_hosts import HealthHosts
from tests.support.ollama_server import OllamaTestServer
from tests.unit.runtimes.conftest import PULLED

INTERVAL_S = 0.1
#: Watch probes to wait for before counting them: enough that one per model would stand out.
PROBE_ROUNDS = 10
#: For what must come, not how soon: a busy machine delays the loop.
EVENTUALLY_S = 10.0


@pytest.fixture
async def hosts() -> AsyncIterator[HealthHosts]:
    async with HealthHosts(2) as servers:
        yield servers


def remote(number: int, url: str, api_key: str | None = None) -> ModelConfig:
    return ModelConfig(id=f"remote-{number}", runtime="remote", url=url, api_key=api_key)


async def watched(stop_after: list[Runtime], urls: list[str]) -> list[asyncio.Task[str]]:
    """A model per URL on one shared prober, started, each waiting for its host to go down."""
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, url), INTERVAL_S, prober) for n, url in enumerate(urls)]
    stop_after.extend(runtimes)
    for runtime in runtimes:
        await runtime.start()
    return [asyncio.create_task(runtime.wait_until_down()) for runtime in runtimes]


async def test_ten_models_on_one_host_starting_together_cost_one_probe(
    hosts: HealthHosts, stop_after: list[Runtime]
) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[0]), INTERVAL_S, prober) for n in range(10)]
    stop_after.extend(runtimes)
    await asyncio.gather(*(runtime.start() for runtime in runtimes))
    assert hosts.requests == [1, 0]


async def test_watching_models_probe_each_host_once_per_interval(hosts: HealthHosts, stop_after: list[Runtime]) -> None:
    """Counted against the intervals that really passed: on a busy machine a probe round can
    take longer than its interval, and a count over a fixed sleep would come out short."""
    watching = await watched(stop_after, [hosts.urls[n % 2] for n in range(20)])
    hosts.reset()
    started = time.monotonic()
    await eventually(lambda: min(hosts.requests) >= PROBE_ROUNDS)
    intervals = (time.monotonic() - started) / INTERVAL_S
    assert max(hosts.requests) <= intervals + 1, (hosts.requests, intervals)  # not 10 models a host per interval
    assert not any(watcher.done() for watcher in watching)  # both hosts stayed healthy


async def test_every_model_on_a_host_hears_when_it_goes_down(hosts: HealthHosts, stop_after: list[Runtime]) -> None:
    watchers = await watched(stop_after, [hosts.urls[n % 2] for n in range(6)])
    hosts.reset()
    await eventually(lambda: min(hosts.requests) >= 1)  # both hosts are being watched
    hosts.status[1] = 503
    down = await asyncio.wait_for(asyncio.gather(*watchers[1::2]), timeout=EVENTUALLY_S)
    probed_healthy = hosts.requests[0]
    await eventually(lambda: hosts.requests[0] > probed_healthy)  # a round since: the healthy host's news is in
    assert down == [f"{hosts.urls[1]}/health answered 503"] * 3
    assert not any(watcher.done() for watcher in watchers[0::2])  # the healthy host's models keep serving


async def test_a_model_started_after_its_host_went_down_is_refused_and_later_recovers(
    hosts: HealthHosts, stop_after: list[Runtime]
) -> None:
    prober = HealthProber(INTERVAL_S)
    hosts.status[0] = 503
    runtime = RemoteRuntime(remote(0, hosts.urls[0]), INTERVAL_S, prober)
    stop_after.append(runtime)
    with pytest.raises(RuntimeStartError, match="answered 503"):
        await runtime.start()
    hosts.status[0] = 200
    await asyncio.sleep(INTERVAL_S)  # a failure is reused for at most one interval
    endpoint = await runtime.start()
    assert endpoint.base_url == hosts.urls[0]


async def test_models_with_different_api_keys_are_probed_separately(
    hosts: HealthHosts, stop_after: list[Runtime]
) -> None:
    prober = HealthProber(INTERVAL_S)
    runtimes = [RemoteRuntime(remote(n, hosts.urls[0], api_key=f"key-{n % 2}"), INTERVAL_S, prober) for n in range(4)]
    stop_after.extend(runtimes)
    await asyncio.gather(*(runtime.start() for runtime in runtimes))
    assert hosts.requests[0] == 2


async def test_the_last_model_to_stop_closes_the_shared_client_and_ends_the_watch(
    hosts: HealthHosts, stop_after: list[Runtime]
) -> None:
    prober = HealthProber(INTERVAL_S)
    first, second = (RemoteRuntime(remote(n, hosts.urls[0]), INTERVAL_S, prober) for n in range(2))
    stop_after.extend([first, second])
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
    # A control: a watch of the other host, on a prober of its own, in the same event loop.
    hosts.reset()
    control = RemoteRuntime(remote(2, hosts.urls[1]), INTERVAL_S, HealthProber(INTERVAL_S))
    stop_after.append(control)
    await control.start()  # one probe
    control_watch = asyncio.create_task(control.wait_until_down())
    await eventually(lambda: hosts.requests[1] >= 3)  # and two intervals' probes: the window has passed
    assert hosts.requests[0] == 0  # no probe outlived the models
    assert not control_watch.done()


async def test_ollama_models_share_one_http_client(
    ollama: OllamaTestServer, monkeypatch: pytest.MonkeyPatch, stop_after: list[Runtime]
) -> None:
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
    stop_after.extend(models)
    for model in models:
        await model.start()
    started = time.monotonic()
    watching = [asyncio.create_task(model.wait_until_down()) for model in models]
    await eventually(
        lambda: len(ollama.requests_to("/api/version")) >= 3 + PROBE_ROUNDS
    )  # one per start, then the watch's
    intervals = (time.monotonic() - started) / INTERVAL_S
    assert len(built) == 1
    assert len(ollama.requests_to("/api/version")) - 3 <= intervals + 1  # one per interval for all three
    assert not any(watcher.done() for watcher in watching)
