"""One router, three runtimes: a supervised llama-server, an Ollama server and a remote host.

Each test leaves the world as it found it (models loaded, remote host up), so they can run
in any order against the one module-scoped router.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import pytest

from tests.integration.runtimes.conftest import (
    HEALTH_INTERVAL_S,
    LOCAL,
    OLLAMA,
    OLLAMA_KEEP_ALIVE,
    OLLAMA_NAME,
    REMOTE,
    REMOTE_API_KEY,
    REMOTE_HEALTH_PATH,
)
from tests.support.api import chat, child_headers, load, model_card, unload
from tests.support.configs import wait_until
from tests.support.llama import LlamaServer, tokens_predicted
from tests.support.ollama_server import OllamaTestServer
from tests.support.service import ServiceProcess
from tests.support.timing import Budget
from tests.support.wiretap import Wiretap

pytestmark = [pytest.mark.integration, pytest.mark.requires_model, pytest.mark.timeout(300)]

ALL_MODELS = [LOCAL, OLLAMA, REMOTE]
#: A probe runs every HEALTH_INTERVAL_S (never stretched); a refused connection fails it at
#: once. This slack covers the router's event loop being scheduled late, stretched by load,
#: nothing more; that the router really probes at HEALTH_INTERVAL_S (not at its 2 s default,
#: which the budget would also allow) is proved by counting its probes on the wire.
PROBE_SLACK_S = 2.0
#: For a state change whose coming, not its timing, is checked.
STATE_CHANGE_S = 60.0
#: The interval a misread config would fall back to, and how many probes tell the two apart.
DEFAULT_HEALTH_INTERVAL_S = 2.0
PROBES = 4


def generator_of(
    model_id: str, router: ServiceProcess, ollama_backend: LlamaServer, remote_llama: LlamaServer
) -> tuple[str, dict[str, str]]:
    """Base URL of the real llama-server that generates for ``model_id``, and the headers it wants."""
    if model_id == LOCAL:
        return f"http://127.0.0.1:{model_card(router, LOCAL)['port']}", child_headers(router, LOCAL)
    return {OLLAMA: ollama_backend.url, REMOTE: remote_llama.url}[model_id], {}


def sse_events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def wait_for_state(router: ServiceProcess, model_id: str, state: str, timeout_s: float) -> dict[str, Any]:
    return wait_until(lambda: (card := model_card(router, model_id))["status"] == state and card, timeout_s)


def test_models_list_shows_every_runtime_loaded(router: ServiceProcess) -> None:
    cards = {card["id"]: card for card in httpx.get(f"{router.url}/v1/models", timeout=30).json()["data"]}
    assert {model_id: (cards[model_id]["runtime"], cards[model_id]["status"]) for model_id in ALL_MODELS} == {
        LOCAL: ("llamacpp", "loaded"),
        OLLAMA: ("ollama", "loaded"),
        REMOTE: ("remote", "loaded"),
    }


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_chat_is_generated_by_the_models_own_runtime(
    model_id: str, router: ServiceProcess, ollama_backend: LlamaServer, remote_llama: LlamaServer
) -> None:
    backend, headers = generator_of(model_id, router, ollama_backend, remote_llama)
    before = tokens_predicted(backend, headers)
    response = chat(router, model_id, max_tokens=2)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] >= 1
    assert tokens_predicted(backend, headers) > before


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_stream_relays_chunks_and_one_done_through_each_runtime(model_id: str, router: ServiceProcess) -> None:
    body = {"model": model_id, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3, "stream": True}
    with httpx.stream("POST", f"{router.url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = sse_events(response)
    chunks = [json.loads(event) for event in events[:-1]]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    assert chunks and all("error" not in chunk for chunk in chunks)
    assert any(choice.get("finish_reason") for chunk in chunks for choice in chunk["choices"])


@pytest.mark.parametrize("model_id", ALL_MODELS)
def test_ollamas_native_api_streams_a_chat_through_each_runtime(model_id: str, router: ServiceProcess) -> None:
    with ollama.Client(host=router.url, timeout=120) as client:
        parts = list(
            client.chat(
                model=model_id,
                messages=[{"role": "user", "content": "Say hi."}],
                options={"num_predict": 3},
                stream=True,
            )
        )
    assert [part.done for part in parts] == [False] * (len(parts) - 1) + [True]
    assert "".join(part.message.content or "" for part in parts)
    assert parts[-1].eval_count


def test_ollama_stream_chunks_reach_the_client_as_the_ollama_server_wrote_them(router: ServiceProcess) -> None:
    body = {"model": OLLAMA, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "stream": True}
    with httpx.stream("POST", f"{router.url}/v1/chat/completions", json=body, timeout=120) as response:
        chunks = [json.loads(event) for event in sse_events(response) if event != "[DONE]"]
    assert {(chunk["model"], chunk["system_fingerprint"]) for chunk in chunks} == {(OLLAMA_NAME, "fp_ollama")}


@pytest.fixture
def ollama_loaded_after(router: ServiceProcess) -> Iterator[None]:
    """For a test that unloads the Ollama model: loaded again after it, as the others expect."""
    yield
    assert load(router, OLLAMA).status_code == 200


@pytest.fixture
def ollama_pulled_after(ollama: OllamaTestServer) -> Iterator[None]:
    """For a test that deletes the Ollama model upstream: pulled again after it."""
    yield
    httpx.post(f"{ollama.url}/api/pull", json={"model": OLLAMA_NAME, "stream": False}, timeout=30).raise_for_status()


@pytest.mark.usefixtures("ollama_loaded_after")
def test_ollama_unload_sends_keep_alive_zero_and_model_leaves_ps(
    router: ServiceProcess, ollama: OllamaTestServer
) -> None:
    response = unload(router, OLLAMA)
    assert response.status_code == 200 and response.json()["status"] == "unloaded"
    assert ollama.requests_to("/api/generate")[-1] == {"model": OLLAMA_NAME, "keep_alive": 0, "stream": False}
    assert OLLAMA_NAME not in httpx.get(f"{ollama.url}/api/ps", timeout=10).text


def test_ollama_load_sends_configured_keep_alive_and_model_joins_ps(
    router: ServiceProcess, ollama: OllamaTestServer
) -> None:
    assert unload(router, OLLAMA).status_code == 200
    response = load(router, OLLAMA)
    assert response.status_code == 200 and response.json()["status"] == "loaded"
    assert ollama.requests_to("/api/generate")[-1] == {
        "model": OLLAMA_NAME,
        "keep_alive": OLLAMA_KEEP_ALIVE,
        "stream": False,
    }
    running = [m["name"] for m in httpx.get(f"{ollama.url}/api/ps", timeout=10).json()["models"]]
    assert running == [OLLAMA_NAME]


def test_llamacpp_unload_stops_its_server_and_load_starts_a_new_one(router: ServiceProcess) -> None:
    old_pid = model_card(router, LOCAL)["pid"]
    try:
        assert unload(router, LOCAL).json()["pid"] is None
    finally:
        reloaded = load(router, LOCAL).json()
    assert reloaded["status"] == "loaded" and reloaded["pid"] not in (None, old_pid)


@pytest.mark.usefixtures("ollama_pulled_after")
def test_ollama_model_deleted_upstream_answers_404_in_openai_envelope(
    router: ServiceProcess, ollama: OllamaTestServer
) -> None:
    assert (
        httpx.request("DELETE", f"{ollama.url}/api/delete", json={"model": OLLAMA_NAME}, timeout=10).status_code == 200
    )
    response = chat(router, OLLAMA)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"model '{OLLAMA_NAME}' not found"


def test_critique_runs_generator_and_critic_on_different_runtimes(router: ServiceProcess) -> None:
    body = {
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 3,
        "orchestration_mode": "critique",
        "orchestration": {"models": [OLLAMA, REMOTE]},
    }
    response = httpx.post(f"{router.url}/v1/chat/completions", json=body, timeout=240)
    assert response.status_code == 200, response.text
    assert set(response.json()["orchestration"]["models_used"]) == {OLLAMA, REMOTE}


def _probes(tap: Wiretap) -> list[Any]:
    return [request for request in tap.requests() if (request.method, request.path) == ("GET", REMOTE_HEALTH_PATH)]


def test_remote_is_probed_once_per_configured_health_interval(router: ServiceProcess, remote_tap: Wiretap) -> None:
    """Counted, not sampled over a fixed window: ``PROBES`` probes come sooner than the 2 s default
    interval would bring them, and no faster than one per configured interval (a busy machine
    only delays probes, which lengthens the wait, not the count)."""
    wait_for_state(router, REMOTE, "loaded", 30)
    before = len(_probes(remote_tap))
    started = time.monotonic()
    wait_until(lambda: len(_probes(remote_tap)) - before >= PROBES, timeout_s=PROBES * DEFAULT_HEALTH_INTERVAL_S)
    elapsed = time.monotonic() - started
    probes = len(_probes(remote_tap)) - before
    assert probes <= elapsed / HEALTH_INTERVAL_S + 1, (
        f"{probes} probes in {elapsed:.1f}s at a {HEALTH_INTERVAL_S}s interval"
    )


def test_remote_probe_uses_the_configured_health_path_and_api_key(router: ServiceProcess, remote_tap: Wiretap) -> None:
    wait_until(lambda: _probes(remote_tap), 10)
    assert {probe.headers.get("authorization") for probe in _probes(remote_tap)} == {f"Bearer {REMOTE_API_KEY}"}
    assert not [r for r in remote_tap.requests() if r.method == "GET" and r.path == "/health"], (
        "probed the default path"
    )


def test_remote_chat_carries_the_api_key_and_the_upstream_model_name(
    router: ServiceProcess, remote_tap: Wiretap
) -> None:
    marker = f"marker-{time.monotonic_ns()}"
    body = {"model": REMOTE, "messages": [{"role": "user", "content": f"Repeat {marker}."}], "max_tokens": 1}
    assert httpx.post(f"{router.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
    sent = [r for r in remote_tap.requests() if r.method == "POST" and marker.encode() in r.body]
    assert [r.path for r in sent] == ["/v1/chat/completions"]
    assert sent[0].headers.get("authorization") == f"Bearer {REMOTE_API_KEY}"
    assert json.loads(sent[0].body)["model"] == REMOTE


def test_stopped_remote_turns_failed_within_health_interval_and_answers_503(
    router: ServiceProcess, remote_llama: LlamaServer
) -> None:
    """Timed by the router's own ``state_since``, not by how soon our polling sees it."""
    budget = Budget(fixed_s=HEALTH_INTERVAL_S, cpu_s=PROBE_SLACK_S)
    remote_llama.stop()
    try:
        stopped_at = time.time()
        failed = wait_for_state(router, REMOTE, "failed", STATE_CHANGE_S)
        response = chat(router, REMOTE)
    finally:
        remote_llama.start()
        wait_for_state(router, REMOTE, "loaded", STATE_CHANGE_S)
    detected_after_s = failed["state_since"] - stopped_at
    assert detected_after_s <= budget.seconds, f"failed {detected_after_s:.2f}s after the stop (budget {budget})"
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "model_unavailable"


def test_restarted_remote_recovers_to_loaded_on_its_own(router: ServiceProcess, remote_llama: LlamaServer) -> None:
    budget = Budget(fixed_s=HEALTH_INTERVAL_S, cpu_s=PROBE_SLACK_S)
    remote_llama.stop()
    try:
        wait_for_state(router, REMOTE, "failed", STATE_CHANGE_S)
    finally:
        remote_llama.start()
    restarted_at = time.time()
    recovered_after_s = wait_for_state(router, REMOTE, "loaded", STATE_CHANGE_S)["state_since"] - restarted_at
    assert recovered_after_s <= budget.seconds, f"loaded {recovered_after_s:.2f}s after the restart (budget {budget})"
    assert chat(router, REMOTE).status_code == 200


def test_stopped_ollama_turns_failed_and_recovers_when_it_returns(
    router: ServiceProcess, ollama: OllamaTestServer
) -> None:
    port = int(ollama.url.rsplit(":", 1)[1])
    ollama.stop()
    try:
        wait_for_state(router, OLLAMA, "failed", STATE_CHANGE_S)
        assert chat(router, OLLAMA).status_code == 503
    finally:
        ollama.start(port=port)
    wait_for_state(router, OLLAMA, "loaded", STATE_CHANGE_S)
    assert ollama.running() == [OLLAMA_NAME]
