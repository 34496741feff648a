"""Per-key limits over real HTTP: 429 with Retry-After and OpenAI's x-ratelimit-* headers, limits
that hold across a reload, and a refused request that touches no model.

The remote model's host answers at once (or holds its answers, for requests in flight) with an
OpenAI reply carrying ``usage``; SmolLM2 is configured but not loaded - a refused request must
leave it so.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.prometheus import sample
from tests.support.recording_host import RecordingHost, recording_host
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

REMOTE_ID = "remote1"
USAGE = {"prompt_tokens": 30, "completion_tokens": 70, "total_tokens": 100}
REPLY = {"id": "x", "object": "chat.completion", "choices": [], "usage": USAGE}
KEYS = {
    "ops": {"key": "k-ops", "scopes": ["admin", "read"]},
    "rpm": {"key": "k-rpm", "scopes": ["inference"], "requests_per_minute": 3},
    "tpm": {"key": "k-tpm", "scopes": ["inference"], "tokens_per_minute": 150},
    "one": {"key": "k-one", "scopes": ["inference"], "max_concurrent": 1},
}


@pytest.fixture(scope="module")
def host() -> Iterator[RecordingHost]:
    with recording_host() as recorder:
        recorder.reply = json.dumps(REPLY).encode()
        yield recorder


@pytest.fixture
def service(tmp_path: Path, host: RecordingHost) -> Iterator[tuple[ServiceProcess, Path]]:
    """A router per test: the buckets start full."""
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}, SMOLLM2_ID: smollm2()}
    config = write_config(tmp_path / "config.toml", models, keys=KEYS)
    with running_service(config, tmp_path / "logs") as service:
        wait_until(lambda: httpx.get(service.url + "/health/ready").status_code == 200, timeout_s=30)
        yield service, config


def chat(service: ServiceProcess, key: str, model: str = REMOTE_ID) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    return httpx.post(
        service.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def test_past_its_requests_per_minute_a_key_gets_429_with_retry_after_and_the_headers(
    service: tuple[ServiceProcess, Path],
) -> None:
    router, _ = service
    answered = [chat(router, "k-rpm") for _ in range(3)]
    assert [response.status_code for response in answered] == [200, 200, 200]
    assert [response.headers["x-ratelimit-remaining-requests"] for response in answered] == ["2", "1", "0"]
    refused = chat(router, "k-rpm")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["retry-after"]) == 20  # 3 a minute: one every 20 s
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")


def test_every_response_to_a_limited_key_carries_the_headers(service: tuple[ServiceProcess, Path]) -> None:
    router, _ = service
    listed = httpx.get(router.url + "/v1/models", headers={"Authorization": "Bearer k-rpm"}, timeout=30)
    assert listed.status_code == 200 and listed.headers["x-ratelimit-limit-requests"] == "3"
    assert listed.headers["x-ratelimit-remaining-requests"] == "3"  # listing is not metered


def test_tokens_are_settled_from_the_usage_the_runtime_reports(service: tuple[ServiceProcess, Path]) -> None:
    router, _ = service
    first = chat(router, "k-tpm")
    assert first.status_code == 200, first.text
    second = chat(router, "k-tpm")  # the first used 100 of 150: the estimate of this one still fits
    assert second.status_code == 200
    refused = chat(router, "k-tpm")  # 200 used: below zero
    assert refused.status_code == 429 and "tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_max_concurrent_counts_requests_in_flight(service: tuple[ServiceProcess, Path], host: RecordingHost) -> None:
    router, _ = service
    already_seen = len(host.seen)  # the host serves the whole module: only a request sent now counts
    host.hold.clear()
    with ThreadPoolExecutor(1) as pool:
        try:
            held = pool.submit(chat, router, "k-one")
            arrived = lambda: any(seen.path == "/v1/chat/completions" for seen in host.seen[already_seen:])  # noqa: E731
            wait_until(arrived, timeout_s=30)
            refused = chat(router, "k-one")
        finally:
            host.hold.set()
        assert held.result().status_code == 200
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert chat(router, "k-one").status_code == 200  # the first one ended: its place is free


def test_a_refused_request_loads_nothing(service: tuple[ServiceProcess, Path]) -> None:
    router, _ = service
    for _ in range(3):
        chat(router, "k-rpm")
    refused = chat(router, "k-rpm", model=SMOLLM2_ID)
    assert refused.status_code == 429
    ops = {"Authorization": "Bearer k-ops"}
    assert httpx.get(f"{router.url}/v1/models/{SMOLLM2_ID}", headers=ops).json()["status"] == "unloaded"
    metrics = httpx.get(router.url + "/metrics", headers=ops).text
    assert not sample(metrics, "inference_requests_total", model=SMOLLM2_ID)
    assert not sample(metrics, "inference_model_loads_total", model=SMOLLM2_ID)


def test_limits_hold_across_a_reload(service: tuple[ServiceProcess, Path], host: RecordingHost) -> None:
    router, config = service
    for _ in range(3):
        assert chat(router, "k-rpm").status_code == 200
    models = {REMOTE_ID: {"runtime": "remote", "url": host.url}, SMOLLM2_ID: smollm2()}
    write_config(config, models, keys=KEYS)  # the same file: a reload must not refill the bucket
    reload = httpx.post(router.url + "/admin/reload", headers={"Authorization": "Bearer k-ops"}, timeout=60)
    assert reload.status_code == 200, reload.text
    assert chat(router, "k-rpm").status_code == 429
