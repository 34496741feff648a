"""``replicas = 2``: two llama-server processes serve one id, and one dying loses no request sent after it."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.integration.replicas.conftest import TIMEOUT_S, StartService
from tests.support.configs import smollm2, wait_until
from tests.support.prometheus import sample

MODEL = "smol"
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4, "temperature": 0}


def replicas(client: httpx.Client) -> list[dict[str, Any]]:
    card = client.get(f"/v1/models/{MODEL}").json()
    return list(card["replicas"])


def test_two_llama_server_processes_serve_one_id(start_service: StartService) -> None:
    service = start_service({MODEL: smollm2(replicas=2, parallel=1, preload=True)})
    with httpx.Client(base_url=service.url, timeout=120) as client:
        listed = replicas(client)
        assert [r["status"] for r in listed] == ["loaded", "loaded"]
        pids = {r["pid"] for r in listed}
        assert len(pids) == 2 and len({r["port"] for r in listed}) == 2
        assert pids <= {child.pid for child in service.children()}
        with ThreadPoolExecutor(2) as pool:  # two at once: one each, neither queued behind the other
            answers = list(pool.map(lambda _: client.post("/v1/chat/completions", json=ASK), range(2)))
        assert [a.status_code for a in answers] == [200, 200]


#: Requests sent once the killed replica is back that must be answered before the flows stop.
ANSWERED_AFTER_RESTART = 4


def test_kill_9_of_one_replica_fails_no_request_sent_after_it(start_service: StartService) -> None:
    service = start_service({MODEL: smollm2(replicas=2, parallel=1, preload=True)})
    outcomes: list[tuple[float, int]] = []  # (when sent, status)
    with httpx.Client(base_url=service.url, timeout=120) as client:
        victim = replicas(client)[0]
        back: list[float] = []  # when the killed replica served again

        def answered_since_back() -> int:
            return sum(1 for sent, _ in outcomes if back and sent > back[0])

        def keep_asking() -> None:
            # Until requests sent with both replicas back have been answered: counted, not timed, so a
            # slow machine (a request can outlast the restart) still sees requests sent after the kill.
            while answered_since_back() < ANSWERED_AFTER_RESTART:
                sent = time.monotonic()
                outcomes.append((sent, client.post("/v1/chat/completions", json=ASK).status_code))

        with ThreadPoolExecutor(2) as pool:
            flows = [pool.submit(keep_asking) for _ in range(2)]
            wait_until(lambda: len(outcomes) >= 4, TIMEOUT_S)
            os.kill(victim["pid"], signal.SIGKILL)
            killed = time.monotonic()
            restarted = lambda: (r := replicas(client)[0])["status"] == "loaded" and r["pid"] != victim["pid"]  # noqa: E731
            wait_until(restarted, TIMEOUT_S)
            back.append(time.monotonic())
            for flow in flows:
                flow.result()
        after = [status for sent, status in outcomes if sent > killed]
        assert after and all(status == 200 for status in after), after
        assert replicas(client)[0]["restarts"] == 1 and replicas(client)[1]["restarts"] == 0


def test_each_replicas_llamacpp_metrics_carry_its_replica_label(start_service: StartService) -> None:
    service = start_service({MODEL: smollm2(replicas=2, parallel=1, preload=True)})
    with httpx.Client(base_url=service.url, timeout=120) as client:
        assert [r["status"] for r in replicas(client)] == ["loaded", "loaded"]
        text = client.get("/metrics").text
        card = client.get(f"/v1/models/{MODEL}").json()
    scraped = [sample(text, "llamacpp:prompt_tokens_total", model=MODEL, replica=index) for index in "01"]
    assert None not in scraped  # each process scraped, not only the leading one
    assert card["rss_mb"] == sum(r["rss_mb"] for r in card["replicas"])
