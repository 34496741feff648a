"""Two back routers behind the LiteLLM gateway (deploy/topology/gateway.yaml): spread, failover, return.

Which router served a request is proven twice: by the router's own request counter
(``/metrics``) and by the deployment id LiteLLM reports in ``x-litellm-model-id``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest

from tests.support.topology import GATEWAY_MASTER_KEY, GATEWAY_MODEL, Topology, wait_all_gone

pytestmark = pytest.mark.integration

SPREAD_REQUESTS = 12  # both routers get some unless the shuffle is 12 heads in a row (p = 0.05 %)
STREAM_REQUESTS = 100
CONCURRENCY = 4
KILL_AFTER = 25  # completed requests before router A is killed: the stream is well under way
#: How soon a SIGKILLed router's llama-server must be gone (PR_SET_PDEATHSIG acts at once).
CHILD_EXIT_S = 2.0
#: gateway.yaml's cooldown_time: a router that failed is retried by the gateway after this long.
COOLDOWN_S = 5.0
#: Model ids LiteLLM reports per deployment (gateway.yaml's model_info.id).
ROUTER_IDS = {"router-a", "router-b"}


@dataclass(frozen=True)
class Answer:
    status: int
    router: str | None  # the deployment that served it, per the gateway
    retried: bool  # the gateway made more than one attempt
    started: float
    seconds: float
    body: str


def gateway_client(topology: Topology) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {GATEWAY_MASTER_KEY}"}
    return httpx.AsyncClient(base_url=topology.gateway_url, headers=headers, timeout=120)


async def ask(client: httpx.AsyncClient, index: int, max_tokens: int = 4) -> Answer:
    body = {
        "model": GATEWAY_MODEL,
        "messages": [{"role": "user", "content": f"Say a word ({index})."}],
        "max_tokens": max_tokens,
    }
    started = time.time()
    response = await client.post("/v1/chat/completions", json=body)
    retried = response.headers.get("x-litellm-attempted-retries", "0") != "0"
    return Answer(
        response.status_code,
        response.headers.get("x-litellm-model-id"),
        retried,
        started,
        time.time() - started,
        response.text[:300],
    )


def failures(answers: list[Answer]) -> list[Answer]:
    return [answer for answer in answers if answer.status != 200]


async def ask_in_batches(client: httpx.AsyncClient, count: int) -> list[Answer]:
    """``count`` requests, ``CONCURRENCY`` at a time (each back router has 2 slots)."""
    answers: list[Answer] = []
    for start in range(0, count, CONCURRENCY):
        answers += await asyncio.gather(
            *(ask(client, index) for index in range(start, min(count, start + CONCURRENCY)))
        )
    return answers


async def test_load_spreads_over_both_back_routers(topology: Topology) -> None:
    before = [back.requests_served() for back in topology.backs]
    async with gateway_client(topology) as client:
        answers = await ask_in_batches(client, SPREAD_REQUESTS)
    assert not failures(answers), failures(answers)
    served = [back.requests_served() - count for back, count in zip(topology.backs, before, strict=True)]
    by_header = Counter(answer.router for answer in answers)
    assert by_header.keys() <= ROUTER_IDS, by_header
    assert served == [by_header["router-a"], by_header["router-b"]], f"/metrics {served} vs gateway {by_header}"
    assert all(count >= 1 for count in served), f"one router got nothing: {served}"
    print(f"{SPREAD_REQUESTS} requests through the gateway: router A served {served[0]:g}, router B {served[1]:g}")


async def test_killing_a_back_router_mid_stream_loses_no_request(topology: Topology) -> None:
    """100 requests, 4 at a time; router A is SIGKILLed after 25: every request still gets 200."""
    router_a, router_b = topology.backs
    served_b_before = router_b.requests_served()
    served_a_before = router_a.requests_served()
    answers: list[Answer] = []
    pending = asyncio.Queue[int]()
    for index in range(STREAM_REQUESTS):
        pending.put_nowait(index)
    halfway = asyncio.Event()
    killed: dict[str, object] = {}

    async def worker(client: httpx.AsyncClient) -> None:
        while not pending.empty():
            answers.append(await ask(client, pending.get_nowait()))
            if len(answers) >= KILL_AFTER:
                halfway.set()

    async def killer() -> None:
        await halfway.wait()
        killed["a_served"] = await asyncio.to_thread(router_a.requests_served) - served_a_before  # A took part
        killed["at"] = time.time()
        killed["children"] = await asyncio.to_thread(router_a.kill)
        killed["answered"] = len(answers)

    async with gateway_client(topology) as client:
        await asyncio.gather(killer(), *(worker(client) for _ in range(CONCURRENCY)))

    assert len(answers) == STREAM_REQUESTS
    assert not failures(answers), f"{len(failures(answers))} lost: {failures(answers)[:3]}"
    assert killed["a_served"], "router A served nothing before the kill: the test proves no failover"
    assert isinstance(killed["at"], float)
    after_kill = [answer for answer in answers if answer.started > killed["at"]]
    assert after_kill, "no request was sent after the kill"
    assert {answer.router for answer in after_kill} == {"router-b"}, Counter(answer.router for answer in after_kill)
    served_b = router_b.requests_served() - served_b_before
    assert served_b == sum(answer.router == "router-b" for answer in answers), (
        "router B's count disagrees with the gateway's"
    )
    children = killed["children"]
    assert isinstance(children, list) and children, "router A had no llama-server child"
    children_gone_s = wait_all_gone(children, CHILD_EXIT_S)  # died with their parent (PR_SET_PDEATHSIG)
    slowest = max(answer.seconds for answer in answers)
    print(
        f"killed router A after {killed['answered']} answers (it had served {killed['a_served']:g}); "
        f"{STREAM_REQUESTS} x 200, {len(after_kill)} sent after the kill, all served by B; "
        f"{sum(answer.retried for answer in answers)} retried by the gateway; slowest {slowest:.2f}s; "
        f"llama-server gone {children_gone_s:.2f}s after the router"
    )


async def test_restarted_back_router_takes_traffic_again(topology: Topology) -> None:
    """Router A dies, the gateway routes around it; A starts again and gets requests - gateway untouched."""
    router_a, _ = topology.backs
    router_a.kill()
    async with gateway_client(topology) as client:
        while_down = await ask_in_batches(client, 2 * CONCURRENCY)
        assert not failures(while_down), failures(while_down)
        assert {answer.router for answer in while_down} == {"router-b"}

        router_a.start()  # same port, same config: a host coming back
        deadline = time.monotonic() + COOLDOWN_S + 15.0
        after_return: list[Answer] = []
        while router_a.requests_served() == 0 and time.monotonic() < deadline:
            after_return += await ask_in_batches(client, CONCURRENCY)
        assert not failures(after_return), failures(after_return)
        assert router_a.requests_served() >= 1, f"router A got no request back within {COOLDOWN_S + 15.0:.0f}s"
        assert "router-a" in {answer.router for answer in after_return}
