"""Choosing a replica: the pure policy (bounded-load affinity) and the prefix index it reads."""

from __future__ import annotations

from inference_service.supervisor.replicas.routing import (
    PrefixIndex,
    ReplicaLoad,
    choose_replica,
    least_loaded,
    within_bound,
)


def serving(*loads: int) -> list[ReplicaLoad]:
    return [ReplicaLoad(index=i, serving=True, startable=True, load=load) for i, load in enumerate(loads)]


def test_least_loaded_takes_the_serving_replica_with_fewest_requests() -> None:
    replicas = [*serving(3, 1), ReplicaLoad(index=2, serving=False, startable=True, load=0)]
    assert least_loaded(replicas) == 1


def test_with_no_replica_serving_a_request_wakes_one_that_can_start_not_a_failed_one() -> None:
    replicas = [
        ReplicaLoad(index=0, serving=False, startable=False, load=0),
        ReplicaLoad(index=1, serving=False, startable=True, load=2),
    ]
    assert least_loaded(replicas) == 1


def test_the_replica_holding_the_prefix_serves_it_while_within_the_load_bound() -> None:
    assert choose_replica(serving(3, 1), preferred=0) == 0  # 4 <= ceil(1.25 * 5 / 2)


def test_a_preferred_replica_above_the_bound_spills_to_the_least_loaded() -> None:
    assert not within_bound(serving(4, 1), 0)  # 5 > ceil(1.25 * 6 / 2) = 4
    assert choose_replica(serving(4, 1), preferred=0) == 1


def test_a_pinned_session_stays_on_its_replica_whatever_the_load_unless_it_is_not_serving() -> None:
    assert choose_replica(serving(9, 0), pinned=0) == 0
    down = [ReplicaLoad(index=0, serving=False, startable=True, load=0), ReplicaLoad(1, True, True, 2)]
    assert choose_replica(down, pinned=0) == 1


def test_a_flood_of_one_prefix_spreads_over_both_replicas_within_the_bound() -> None:
    """16 concurrent requests of one conversation: each is chosen, then counted, before the next arrives."""
    index, loads = PrefixIndex(), [0, 0]
    for _ in range(16):
        replicas = serving(*loads)
        chosen = choose_replica(replicas, preferred=index.lookup([7], lambda replica: 1))
        index.remember([7], chosen, generation=1)
        loads[chosen] += 1
    assert min(loads) > 0 and max(loads) <= 10  # ceil(1.25 * 16 / 2)


def test_the_longest_known_prefix_decides() -> None:
    index = PrefixIndex()
    index.remember([1, 2], replica=0, generation=1)
    index.remember([1, 2, 3], replica=1, generation=1)
    assert index.lookup([3, 2, 1], lambda replica: 1) == 1
    assert index.lookup([9, 2], lambda replica: 1) == 1  # block 2's newest server


def test_a_replica_restarted_since_is_forgotten() -> None:
    index = PrefixIndex()
    index.remember([1], replica=0, generation=3)
    assert index.lookup([1], lambda replica: 4) is None
    assert len(index) == 0


def test_the_index_keeps_only_the_newest_entries() -> None:
    index = PrefixIndex(capacity=3)
    index.remember([1, 2, 3], replica=0, generation=1)
    assert index.lookup([1], lambda replica: 1) == 0  # used: now the newest
    index.remember([4], replica=1, generation=1)
    assert len(index) == 3
    assert index.lookup([2], lambda replica: 1) is None and index.lookup([1], lambda replica: 1) == 0
