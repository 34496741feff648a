"""OllamaRuntime against the Ollama test server: load, unload, failures and liveness."""

from __future__ import annotations

import asyncio

import pytest

from inference_service.config import ModelConfig
from inference_service.runtimes.base import Runtime, RuntimeStartError
from inference_service.runtimes.ollama import OllamaRuntime, canonical_name, keep_alive_value
from tests.support.configs import eventually
from tests.support.ollama_server import OllamaTestServer
from tests.support.service import free_port
from tests.unit.runtimes.conftest import NOT_PULLED, PULLED


def runtime(url: str, name: str = PULLED, keep_alive: str | None = "10m") -> OllamaRuntime:
    model = ModelConfig(id="m", runtime="ollama", ollama_model=name, keep_alive=keep_alive)
    return OllamaRuntime(model, url=url, health_interval_s=0.05, load_timeout_s=10)


def test_canonical_name_adds_ollamas_default_tag() -> None:
    assert [canonical_name(n) for n in ("qwen2.5", "qwen2.5:7b", "me/model", "host:5000/me/model")] == [
        "qwen2.5:latest",
        "qwen2.5:7b",
        "me/model:latest",
        "host:5000/me/model:latest",
    ]


def test_keep_alive_numbers_become_seconds_and_durations_stay_strings() -> None:
    assert [keep_alive_value(v) for v in (None, "300", "-1", "10m")] == [None, 300, -1, "10m"]


async def test_start_loads_with_keep_alive_and_returns_the_v1_endpoint(
    ollama: OllamaTestServer, stop_after: list[Runtime]
) -> None:
    model = runtime(ollama.url)
    stop_after.append(model)
    endpoint = await model.start()
    assert (endpoint.base_url, endpoint.model_name) == (ollama.url, PULLED)
    assert ollama.requests_to("/api/generate") == [{"model": PULLED, "keep_alive": "10m", "stream": False}]
    assert ollama.running() == [PULLED]


async def test_stop_unloads_with_keep_alive_zero(ollama: OllamaTestServer) -> None:
    model = runtime(ollama.url)
    await model.start()
    await model.stop()
    assert ollama.requests_to("/api/generate")[-1] == {"model": PULLED, "keep_alive": 0, "stream": False}
    assert ollama.running() == []


async def test_stop_of_a_never_started_model_sends_nothing(ollama: OllamaTestServer) -> None:
    await runtime(ollama.url).stop()
    assert ollama.requests_to("/api/generate") == []


async def test_start_of_an_unpulled_model_says_how_to_pull_it(ollama: OllamaTestServer) -> None:
    with pytest.raises(RuntimeStartError, match=r"not pulled .* run `inference-service models pull m`"):
        await runtime(ollama.url, name=NOT_PULLED).start()


async def test_start_refused_by_the_ollama_server_reports_its_status_and_message(ollama: OllamaTestServer) -> None:
    with pytest.raises(RuntimeStartError, match=r"refused to load .*HTTP 400: time: invalid duration"):
        await runtime(ollama.url, keep_alive="ten minutes").start()


async def test_start_with_ollama_unreachable_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(RuntimeStartError, match=f"Ollama at {url} unreachable"):
        await runtime(url).start()


async def test_wait_until_down_returns_once_ollama_stops(ollama: OllamaTestServer, stop_after: list[Runtime]) -> None:
    model = runtime(ollama.url)
    stop_after.append(model)
    await model.start()
    probed = len(ollama.requests_to("/api/version"))
    watcher = asyncio.create_task(model.wait_until_down())
    await eventually(lambda: len(ollama.requests_to("/api/version")) >= probed + 2)  # two watch rounds
    assert not watcher.done()
    await asyncio.to_thread(ollama.stop)
    reason = await asyncio.wait_for(watcher, timeout=5)
    assert reason.startswith(f"Ollama at {ollama.url} stopped answering")
