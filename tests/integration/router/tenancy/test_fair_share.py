"""Fair share on a real one-slot llama-server: a key with 24 requests queued delays another key's
single request by about one service time, not 24 (orchestration stages act for their request's key:
tests/integration/router/tenancy/test_usage.py counts them for it).

Counted, not timed: the light request is served within 3 service times when at most 2 of the
heavy key's requests finish while it is in the router (the one running when it came, and at most
one more); on the FIFO this replaces, all 24 queued ahead of it would.

The heavy key's first request is a long one that holds the slot while the other 24 queue: with
short answers only, a busy box could serve the first before all 24 had arrived, and the queue
never stood at 24 (failed in a fresh-clone ``make test`` beside a busy loop).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from statistics import median

import httpx
import pytest

from tests.support.configs import SMOLLM2_ID, smollm2, wait_until, write_config
from tests.support.prometheus import sample
from tests.support.service import ServiceProcess, running_service

pytestmark = pytest.mark.integration

HEAVY_QUEUED = 24
KEYS = {
    "heavy": {"key": "k-heavy", "scopes": ["inference"]},
    "light": {"key": "k-light", "scopes": ["inference"]},
    "ops": {"key": "k-ops", "scopes": ["read", "admin"]},
}
BODY = {"model": SMOLLM2_ID, "messages": [{"role": "user", "content": "Count."}], "max_tokens": 8, "ignore_eos": True}
#: Holds the one slot for ~400 tokens: 10-20 s on this box, idle or beside a busy loop.
HOLDER = {**BODY, "max_tokens": 400}


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    directory: Path = tmp_path_factory.mktemp("fair-share")
    model = smollm2(preload=True, parallel=1, queue_size=64, queue_timeout_s=600)
    config = write_config(directory / "config.toml", {SMOLLM2_ID: model}, keys=KEYS)
    with running_service(config, directory / "logs", wait_ready=True) as service:
        yield service


def timed_chat(router: ServiceProcess, key: str, body: dict[str, object] = BODY) -> tuple[float, float]:
    """(sent, answered) on the monotonic clock."""
    sent = time.monotonic()
    answer = httpx.post(
        router.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=600
    )
    assert answer.status_code == 200, answer.text
    return sent, time.monotonic()


def gauge(router: ServiceProcess, name: str) -> float:
    metrics = httpx.get(router.url + "/metrics", headers={"Authorization": "Bearer k-ops"}, timeout=30).text
    return sample(metrics, name, model=SMOLLM2_ID) or 0.0


def test_a_light_key_is_served_within_three_service_times_of_a_heavy_keys_flood(router: ServiceProcess) -> None:
    with ThreadPoolExecutor(HEAVY_QUEUED + 2) as pool:
        heavy = [pool.submit(timed_chat, router, "k-heavy", HOLDER)]
        wait_until(lambda: gauge(router, "inference_in_flight") == 1, timeout_s=120)
        heavy += [pool.submit(timed_chat, router, "k-heavy") for _ in range(HEAVY_QUEUED)]
        wait_until(lambda: gauge(router, "inference_queue_depth") == HEAVY_QUEUED, timeout_s=120)
        light_sent, light_answered = pool.submit(timed_chat, router, "k-light").result()
        heavy_answered = sorted(future.result()[1] for future in heavy)
    served_meanwhile = [moment for moment in heavy_answered if light_sent < moment < light_answered]
    service_s = median(later - earlier for earlier, later in itertools.pairwise(heavy_answered))
    assert len(served_meanwhile) <= 2, (
        f"{len(served_meanwhile)} of the heavy key's requests were served before the light one; it waited "
        f"{(light_answered - light_sent) / service_s:.1f} service times of {service_s:.2f}s"
    )
