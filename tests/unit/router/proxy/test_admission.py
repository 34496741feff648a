"""AdmissionQueue: who gets a slot, in which order, what happens to the rest - and to all of them when a reload changes the limits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from inference_service.config import Settings
from inference_service.router.observability.metrics import Metrics
from inference_service.router.proxy.admission import AdmissionQueue, QueueFull, QueueTimeout, retry_after_s
from inference_service.router.proxy.dispatch import Dispatcher
from inference_service.router.proxy.upstream import UpstreamClient
from inference_service.supervisor import Supervisor
from tests.unit.supervisor.fakes import FakeRuntime

HIGH, NORMAL, LOW = 3, 2, 1


async def settle() -> None:
    """Let every runnable task advance until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


@contextlib.asynccontextmanager
async def occupied(queue: AdmissionQueue) -> AsyncIterator[asyncio.Event]:
    """Hold every slot of ``queue`` until the yielded event is set (or the block exits)."""
    release = asyncio.Event()

    async def hold() -> None:
        async with queue.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(queue.parallel)]
    await settle()
    try:
        yield release
    finally:
        release.set()
        await asyncio.gather(*holders)


async def admitted_in_order(queue: AdmissionQueue, arrivals: list[tuple[str, int]]) -> list[str]:
    """Queue ``arrivals`` (name, priority) behind a full queue, free the slots, return admission order."""
    order: list[str] = []

    async def request(name: str, priority: int) -> None:
        async with queue.slot(priority):
            order.append(name)

    async with occupied(queue):
        waiters = []
        for name, priority in arrivals:
            waiters.append(asyncio.create_task(request(name, priority)))
            await settle()  # arrival order is the creation order
    await asyncio.gather(*waiters)
    return order


async def test_below_parallel_requests_are_admitted_at_once() -> None:
    queue = AdmissionQueue(parallel=2, max_queue=0, timeout_s=1)
    async with queue.slot(), queue.slot():
        assert (queue.active, queue.waiting) == (2, 0)
    assert queue.active == 0


async def test_waiters_are_served_high_priority_first() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=10, timeout_s=5)
    order = await admitted_in_order(queue, [("low", LOW), ("normal", NORMAL), ("high", HIGH)])
    assert order == ["high", "normal", "low"]


async def test_equal_priority_waiters_are_served_first_in_first_out() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=10, timeout_s=5)
    order = await admitted_in_order(queue, [(f"r{i}", NORMAL) for i in range(5)])
    assert order == ["r0", "r1", "r2", "r3", "r4"]


async def test_request_beyond_the_queue_bound_is_refused_with_queue_full() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=2, timeout_s=5)
    async with occupied(queue):
        queued = [asyncio.create_task(queue._acquire(NORMAL)) for _ in range(2)]
        await settle()
        with pytest.raises(QueueFull, match="queue_size 2"):
            await queue._acquire(NORMAL)
        for task in queued:
            task.cancel()
        await asyncio.gather(*queued, return_exceptions=True)


async def test_waiter_gives_up_with_queue_timeout() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=5, timeout_s=0.05)
    async with occupied(queue):
        with pytest.raises(QueueTimeout, match=r"0\.05s"):
            async with queue.slot():
                pass
        assert queue.waiting == 0


async def test_released_slot_passes_to_the_waiter_not_to_a_newcomer() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=5, timeout_s=5)
    order: list[str] = []
    waiter_done = asyncio.Event()

    async def request(name: str, hold: asyncio.Event | None = None) -> None:
        async with queue.slot():
            order.append(name)
            if hold is not None:
                await hold.wait()

    async with occupied(queue):
        waiter = asyncio.create_task(request("waiter", hold=waiter_done))
        await settle()
    # The holder released: the slot went straight to the waiter (still counted as active, nothing
    # queued), so a request arriving now cannot take it.
    assert (queue.active, queue.waiting) == (1, 0)
    newcomer = asyncio.create_task(request("newcomer"))
    await settle()
    assert order == ["waiter"]
    waiter_done.set()
    await asyncio.gather(waiter, newcomer)
    assert order == ["waiter", "newcomer"]
    assert queue.active == 0


async def test_cancelled_waiter_does_not_leak_its_slot() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=5, timeout_s=5)
    async with occupied(queue):
        waiter = asyncio.create_task(queue._acquire(NORMAL))
        await settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    assert (queue.active, queue.waiting) == (0, 0)
    async with queue.slot():
        assert queue.active == 1


async def test_abandoned_waiters_are_counted_out_at_once_and_do_not_pile_up() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=100_000, timeout_s=5)
    async with occupied(queue):
        for _ in range(40):  # 40 bursts of 500 waiters that each give up: 20,000 abandoned in all
            burst = [asyncio.create_task(queue._acquire(NORMAL)) for _ in range(500)]
            await settle()
            for task in burst:
                task.cancel()
            await asyncio.gather(*burst, return_exceptions=True)
            assert queue.waiting == 0
        assert queue.heap_size <= 16  # not 20,000 dead entries waiting for a slot to free
        newcomer = asyncio.create_task(queue._acquire(NORMAL))
        await settle()
        assert queue.waiting == 1
    await newcomer
    assert queue.active == 1


@pytest.mark.parametrize(
    ("ahead", "parallel", "service_s", "load_s", "expected"),
    [
        (0, 1, 0.2, 0.0, 1),  # nothing ahead, fast model: the floor
        (3, 1, 2.0, 0.0, 8),  # 3 ahead + own turn, one at a time, 2 s each
        (7, 4, 2.0, 0.0, 4),  # 7 ahead on 4 slots: 2 batches of 2 s
        (3, 1, 2.0, 5.0, 13),  # not loaded: plus the observed load time
        (500, 1, 3.0, 0.0, 60),  # the ceiling
    ],
)
def test_retry_after_grows_with_the_queue_ahead_and_the_load_time(
    ahead: int, parallel: int, service_s: float, load_s: float, expected: int
) -> None:
    assert retry_after_s(ahead, parallel, service_s, load_s) == expected


def test_service_time_is_a_moving_average_of_observed_requests() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=1, timeout_s=1)
    assert queue.service_s == AdmissionQueue.default_service_s
    now = time.monotonic()
    queue.observe_service(now - 2.0)
    assert queue.service_s == pytest.approx(2.0, abs=0.05)
    queue.observe_service(now)
    assert queue.service_s == pytest.approx(1.6, abs=0.05)


async def test_without_a_cap_every_request_is_admitted_at_once() -> None:
    queue = AdmissionQueue(parallel=None, max_queue=0, timeout_s=0.05)
    release = asyncio.Event()
    entered = 0

    async def hold() -> None:
        nonlocal entered
        async with queue.slot():
            entered += 1
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(1000)]
    await settle()
    assert entered == 1000 and queue.waiting == 0
    release.set()
    await asyncio.gather(*holders)
    assert queue.active == 0


@contextlib.asynccontextmanager
async def holding(queue: AdmissionQueue, count: int) -> AsyncIterator[list[asyncio.Event]]:
    """``count`` requests for ``queue``, each holding its slot (once it has one) until its event is set."""
    releases = [asyncio.Event() for _ in range(count)]

    async def hold(release: asyncio.Event) -> None:
        async with queue.slot():
            await release.wait()

    requests = []
    for release in releases:
        requests.append(asyncio.create_task(hold(release)))
        await settle()  # arrival order is the creation order
    try:
        yield releases
    finally:
        for release in releases:
            release.set()
        await asyncio.gather(*requests)


async def test_raising_parallel_admits_waiters_at_once_up_to_the_new_limit() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=8, timeout_s=5)
    async with holding(queue, 6):
        assert (queue.active, queue.waiting) == (1, 5)
        queue.configure(parallel=4, max_queue=8, timeout_s=5)
        assert (queue.active, queue.waiting) == (4, 2)  # nobody had to finish first


async def test_lowering_parallel_lets_running_requests_finish_and_admits_fewer() -> None:
    queue = AdmissionQueue(parallel=4, max_queue=8, timeout_s=5)
    async with holding(queue, 6) as releases:
        queue.configure(parallel=2, max_queue=8, timeout_s=5)
        assert (queue.active, queue.waiting) == (4, 2)  # the running ones are not touched
        for finished, expected in ((0, (3, 2)), (1, (2, 2)), (2, (2, 1))):
            releases[finished].set()
            await settle()
            assert (queue.active, queue.waiting) == expected, finished


async def test_lowering_queue_size_refuses_newcomers_but_keeps_the_queued() -> None:
    queue = AdmissionQueue(parallel=1, max_queue=8, timeout_s=5)
    async with holding(queue, 4) as releases:
        queue.configure(parallel=1, max_queue=2, timeout_s=5)
        with pytest.raises(QueueFull):
            await queue._acquire(NORMAL)
        assert queue.waiting == 3
        releases[0].set()
        await settle()
        assert (queue.active, queue.waiting) == (1, 2)  # the queued are served in turn


def remote_model(parallel: int) -> Settings:
    return Settings(models={"m": {"runtime": "remote", "url": "http://fake/m", "parallel": parallel, "queue_size": 8}})


@pytest.fixture
async def dispatcher() -> AsyncIterator[Dispatcher]:
    """A dispatcher for one remote model with one slot, over a fake runtime (only its queues are used)."""
    settings = remote_model(parallel=1)
    supervisor = Supervisor(settings, lambda config: FakeRuntime(config.id))
    yield Dispatcher(settings, supervisor, UpstreamClient(), Metrics())
    await supervisor.close()


async def test_a_reload_raising_parallel_starts_the_waiting_requests_at_once(dispatcher: Dispatcher) -> None:
    queue = dispatcher.queues["m"]
    async with holding(queue, 6):
        dispatcher.configure_queues(remote_model(parallel=4))
        assert (queue.active, queue.waiting) == (4, 2)


async def test_a_restarting_models_queue_keeps_its_limits_until_its_new_process_serves(
    dispatcher: Dispatcher,
) -> None:
    queue = dispatcher.queues["m"]
    async with holding(queue, 6):
        dispatcher.configure_queues(remote_model(parallel=4), restarting=["m"])
        assert (queue.active, queue.waiting) == (1, 5)  # the old process, being drained, has one slot
        dispatcher.configure_queues(remote_model(parallel=4))
        assert (queue.active, queue.waiting) == (4, 2)
