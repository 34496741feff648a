"""Elastic replicas on real llama-servers: a queue that waits past ``scale_up_wait_s`` starts the second
replica, which stops once idle for its ``ttl_s`` while the ``min_replicas`` floor stays up."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.integration.replicas.conftest import TIMEOUT_S, StartService
from tests.support.configs import smollm2, wait_until
from tests.support.events import listening

ELASTIC = smollm2(replicas=2, min_replicas=1, parallel=1, scale_up_wait_s=0.5, ttl_s=20, preload=True)
#: Six answers of 64 tokens one after another: a queue that outlasts the second replica's start (~1-2 s
#: on an idle CPU, where one 16-token answer takes a fraction of a second), so that replica serves some.
QUEUED = 6
ASK = {
    "model": "smol",
    "messages": [{"role": "user", "content": "Tell a story."}],
    "max_tokens": 64,
    "ignore_eos": True,
}


def states(client: httpx.Client) -> list[str]:
    return [replica["status"] for replica in client.get("/v1/models/smol").json()["replicas"]]


def served_by(client: httpx.Client, replica: int) -> float:
    """Requests the router sent to ``replica`` of smol (``inference_replica_requests_total``)."""
    pattern = rf'inference_replica_requests_total\{{model="smol",replica="{replica}"\}} (\S+)'
    served = re.search(pattern, client.get("/metrics").text)
    return float(served.group(1)) if served is not None else 0.0


def test_a_waiting_queue_starts_a_second_replica_that_stops_when_idle(start_service: StartService) -> None:
    service = start_service({"smol": ELASTIC})
    with (
        httpx.Client(base_url=service.url, timeout=300) as client,
        listening(f"{service.url}/v1/events?types=replica_scaled") as scaling,
    ):
        assert states(client) == ["loaded", "unloaded"]
        with ThreadPoolExecutor(QUEUED) as pool:
            answers = [pool.submit(client.post, "/v1/chat/completions", json=ASK) for _ in range(QUEUED)]
            wait_until(lambda: states(client)[1] == "loaded", TIMEOUT_S)
            assert [answer.result().status_code for answer in answers] == [200] * QUEUED
        assert served_by(client, 1) >= 1  # the queue moved to it once it served
        wait_until(lambda: states(client)[1] == "unloaded", TIMEOUT_S)
        assert states(client) == ["loaded", "unloaded"]  # the min_replicas floor stays up past its ttl_s
        scaling.wait_for(lambda event: event["direction"] == "down", TIMEOUT_S)
    assert [(e["model"], e["replica"], e["direction"], e["reason"]) for e in scaling.events] == [
        ("smol", 1, "up", "queue"),
        ("smol", 1, "down", "idle"),
    ]


#: A TTL far shorter than one answer: the second replica idles past it while the first still serves the
#: answers admitted before it came up (one running, one in llama-server's own queue) and the third waits.
#: The answers are long enough (512 tokens: ~17 s on an idle CPU, ~21 s beside a busy loop with one
#: thread) that the second replica (up in 1-11 s) serves before the first answer ends.
SHORT_TTL = smollm2(replicas=2, min_replicas=1, parallel=1, ctx_size=1024, scale_up_wait_s=0.5, ttl_s=1, preload=True)
LONG_ASK = {**ASK, "max_tokens": 512}


def test_an_elastic_replica_does_not_idle_out_while_requests_queue_on_another(start_service: StartService) -> None:
    service = start_service({"smol": SHORT_TTL})
    with (
        httpx.Client(base_url=service.url, timeout=600) as client,
        listening(f"{service.url}/v1/events?types=replica_scaled") as scaling,
    ):
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(client.post, "/v1/chat/completions", json=LONG_ASK) for _ in range(3)]
            assert [answer.result().status_code for answer in answers] == [200] * 3
        assert served_by(client, 1) == 1  # the third request, admitted once the first was done
        scaling.wait_for(lambda event: event["direction"] == "down", TIMEOUT_S)
    assert [(e["replica"], e["direction"], e["reason"]) for e in scaling.events] == [
        (1, "up", "queue"),
        (1, "down", "idle"),
    ]
