"""Weighted fair queueing across keys: a flood delays another key by about one request, weights share
a busy model, an idle key gains no credit, priority orders a key's own requests."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

from inference_service.router.proxy.admission import AdmissionQueue
from inference_service.router.tenancy.fairness import FairQueue


def drain(queue: FairQueue[str], count: int | None = None) -> list[str]:
    served = []
    for _ in itertools.count() if count is None else range(count):
        item = queue.pop()
        if item is None:
            break
        served.append(item)
    return served


def test_one_key_is_served_by_priority_then_arrival() -> None:
    queue: FairQueue[str] = FairQueue()
    for name, priority in (("a", 2), ("b", 1), ("c", 3), ("d", 2)):
        queue.push(name, "k", priority=priority)
    assert drain(queue) == ["c", "a", "d", "b"]


def test_a_flood_delays_another_keys_request_by_one_turn_not_sixty() -> None:
    queue: FairQueue[str] = FairQueue()
    for number in range(60):
        queue.push(f"heavy-{number}", "heavy")
    assert queue.pop() == "heavy-0"  # served while the light request arrives
    queue.push("light", "light")
    assert drain(queue, 2).index("light") <= 1


def test_weights_share_a_busy_model() -> None:
    queue: FairQueue[str] = FairQueue()
    for _ in range(100):
        queue.push("gold", "gold", weight=2)
        queue.push("basic", "basic", weight=1)
    assert Counter(drain(queue, 30)) == {"gold": 20, "basic": 10}


def test_a_key_that_was_idle_gains_no_credit() -> None:
    queue: FairQueue[str] = FairQueue()
    for _ in range(10):
        queue.push("a", "a")
    assert drain(queue, 9) == ["a"] * 9  # b was idle all along
    for _ in range(10):
        queue.push("b", "b")
    queue.push("a", "a")
    served = drain(queue, 6)
    assert served.count("b") <= 4 and "a" in served  # b does not get its idle time back as a burst


def test_one_keys_priority_does_not_overtake_another_key() -> None:
    queue: FairQueue[str] = FairQueue()
    for _ in range(5):
        queue.push("urgent", "a", priority=3)
    queue.push("normal", "b", priority=1)
    assert drain(queue, 2).count("normal") == 1


def test_cancelled_entries_are_never_served_and_do_not_pile_up() -> None:
    queue: FairQueue[str] = FairQueue()
    entries = [queue.push(f"x{number}", "k") for number in range(1000)]
    for entry in entries[:-1]:
        queue.cancel(entry)
    assert queue.live == 1 and queue.entries <= 18
    assert drain(queue) == ["x999"]


async def test_the_admission_queue_serves_a_light_key_after_one_request_of_a_heavy_one() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=100, timeout_s=60)
    order: list[str] = []
    release = asyncio.Event()

    async def request(tenant: str) -> None:
        async with queue.slot(tenant=tenant):
            order.append(tenant)
            await release.wait()
            release.clear()

    tasks = [asyncio.create_task(request("heavy")) for _ in range(25)]
    while not order:
        await asyncio.sleep(0)
    tasks.append(asyncio.create_task(request("light")))
    while queue.waiting < 25:
        await asyncio.sleep(0)
    while len(order) < 26:
        release.set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order.index("light") <= 2  # behind the one running and at most one more


def test_a_request_admitted_at_once_counts_against_its_key() -> None:
    """The flood's first request ran without queueing: the light key still goes before the flood's next."""
    queue: FairQueue[str] = FairQueue()
    queue.charge("heavy")  # running, never queued
    for number in range(24):
        queue.push(f"heavy-{number}", "heavy")
    queue.push("light", "light")
    assert queue.pop() == "light"


def test_charges_move_the_virtual_time_so_no_key_banks_a_debt() -> None:
    """A key served at once a thousand times while nobody else asked is not starved once others do."""
    queue: FairQueue[str] = FairQueue()
    for _ in range(1000):
        queue.charge("busy")
    for _ in range(3):
        queue.push("busy", "busy")
        queue.push("newcomer", "newcomer")
    assert drain(queue, 4).count("busy") == 2
