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


def test_kill_9_of_one_replica_fails_no_request_sent_after_it(start_service: StartService) -> None:
    service = start_service({MODEL: smollm2(replicas=2, parallel=1, preload=True)})
    outcomes: list[tuple[float, int]] = []  # (when sent, status)
    with httpx.Client(base_url=service.url, timeout=120) as client:
        victim = replicas(client)[0]
        stop_at: list[float] = []

        def keep_asking() -> None:
            while not stop_at or time.monotonic() < stop_at[0]:
                sent = time.monotonic()
                outcomes.append((sent, client.post("/v1/chat/completions", json=ASK).status_code))

        with ThreadPoolExecutor(2) as pool:
            flows = [pool.submit(keep_asking) for _ in range(2)]
            wait_until(lambda: len(outcomes) >= 4, TIMEOUT_S)
            os.kill(victim["pid"], signal.SIGKILL)
            killed = time.monotonic()
            restarted = lambda: (r := replicas(client)[0])["status"] == "loaded" and r["pid"] != victim["pid"]  # noqa: E731
            wait_until(restarted, TIMEOUT_S)
            stop_at.append(time.monotonic() + 2.0)  # and a little while with both replicas back
            for flow in flows:
                flow.result()
        after = [status for sent, status in outcomes if sent > killed]
        assert after and all(status == 200 for status in after), after
        assert replicas(client)[0]["restarts"] == 1 and replicas(client)[1]["restarts"] == 0
