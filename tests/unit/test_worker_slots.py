"""Specification: the node's shared worker pool (``roger_actors.partition.worker_slots``):
``worker_pool_size`` slots, one per worker process, shared by the queue
types of every partition by weighted max-min fairness; a queue type over
its share gives a slot back while another waits; ``max_workers`` stays each
one's cap (its demand never passes it).

Run with ``scripts/test tests/unit/test_worker_slots.py``.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roger_actors.partition.worker_slots import QUANTUM_SECONDS, SlotClient, WorkerSlots
from tests.memory_rig import Clock


class Woken:
    """Counts the wakes of each client."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def of(self, name: str) -> int:
        return self.counts.get(name, 0)

    def wake(self, name: str) -> None:
        self.counts[name] = self.of(name) + 1


def _pool(size: int, *names: str) -> tuple[WorkerSlots, Woken, list[SlotClient], Clock]:
    clock = Clock()
    slots = WorkerSlots(size, clock)
    woken = Woken()
    clients = [slots.client(name, lambda name=name: woken.wake(name)) for name in names]
    return slots, woken, clients, clock


def _take(client: SlotClient, queue: str, demand: int, weight: int = 10) -> int:
    """Set the demand, then acquire as many slots as granted; returns them."""
    client.demand(queue, demand, weight)
    taken = 0
    while taken < demand and client.acquire(queue):
        taken += 1
    return taken


def test_a_lone_queue_takes_its_demand_up_to_the_pool_size() -> None:
    slots, _, [a], _ = _pool(4, "a")
    assert _take(a, "q", 3) == 3
    a.demand("q", 6, 10)
    assert a.acquire("q") and not a.acquire("q")
    assert slots.held == 4 and slots.free == 0


def test_queues_with_a_backlog_share_the_pool_evenly_by_weight() -> None:
    slots, _, [a, b], _ = _pool(6, "a", "b")
    a.demand("q", 10, 10)
    b.demand("q", 10, 10)
    assert (slots.share(a, "q"), slots.share(b, "q")) == (3.0, 3.0)
    a.demand("q", 10, 4)  # max_workers 4 against 2
    b.demand("q", 10, 2)
    assert (slots.share(a, "q"), slots.share(b, "q")) == (4.0, 2.0)


def test_what_a_small_demand_leaves_goes_to_the_others() -> None:
    slots, _, [a, b, c], _ = _pool(8, "a", "b", "c")
    a.demand("q", 1, 10)
    b.demand("q", 10, 10)
    c.demand("q", 10, 10)
    assert [slots.share(x, "q") for x in (a, b, c)] == [1.0, 3.5, 3.5]


def test_a_queue_cannot_take_a_free_slot_past_its_share() -> None:
    _, _, [a, b], _ = _pool(4, "a", "b")
    b.demand("q", 2, 10)
    assert _take(a, "q", 10) == 2  # two are b's share, though free
    assert _take(b, "q", 2) == 2


def test_a_queue_over_its_share_gives_a_slot_back_to_one_that_waits() -> None:
    slots, woken, [a, b], _ = _pool(4, "a", "b")
    assert _take(a, "q", 10) == 4
    assert not a.surplus("q")  # nobody waits
    b.demand("q", 1, 10)
    assert not b.acquire("q")  # no slot free
    assert woken.of("a") == 1  # a was told to look again
    assert a.surplus("q")
    a.release("q")  # a stops an idle worker
    assert not a.surplus("q") and woken.of("b") == 1
    assert b.acquire("q")
    assert (a.held("q"), b.held("q"), slots.free) == (3, 1, 0)
    assert not a.surplus("q")  # 3 is a's share now


def test_a_fractional_surplus_waits_for_the_quantum() -> None:
    # Three queues want a worker each, two slots: each holds one for the quantum in turn.
    _, _, [a, b, c], clock = _pool(2, "a", "b", "c")
    assert _take(a, "q", 1) == 1
    assert _take(b, "q", 1) == 1
    assert _take(c, "q", 1) == 0
    assert not a.surplus("q") and not b.surplus("q")
    clock.now += QUANTUM_SECONDS
    assert a.surplus("q") and b.surplus("q")
    a.release("q")
    assert not b.surplus("q")  # a slot is free: c takes it
    assert c.acquire("q")
    assert not c.surplus("q")  # just taken


def test_an_unused_worker_gives_its_slot_up_within_the_quantum() -> None:
    _, _, [a, b], _ = _pool(1, "a", "b")
    assert _take(a, "q", 1) == 1
    b.demand("q", 1, 10)
    assert not a.surplus("q")  # within the quantum, a's worker may get jobs yet
    assert a.surplus("q", unused=True)  # it has none to take


def test_a_slot_given_up_goes_to_the_queue_waiting_longest_not_back_to_the_giver() -> None:
    _, woken, [a, b, c], clock = _pool(1, "a", "b", "c")
    assert _take(a, "q", 1) == 1
    b.demand("q", 1, 10)
    clock.now += 0.1
    c.demand("q", 1, 10)
    clock.now += QUANTUM_SECONDS
    assert a.surplus("q")
    a.release("q")  # a still has jobs: it waits again, behind b and c
    assert not a.acquire("q") and not c.acquire("q")
    assert woken.of("b") == 1 and b.acquire("q")
    clock.now += QUANTUM_SECONDS
    b.release("q")
    assert not a.acquire("q") and c.acquire("q")  # c waited longer than a


def test_a_waiter_woken_that_takes_nothing_holds_the_others_up_one_quantum_at_most() -> None:
    _, _, [a, b], clock = _pool(1, "a", "b")
    assert _take(a, "q", 1) == 1
    b.demand("q", 1, 10)  # b's Consumer never acts on its wake
    clock.now += QUANTUM_SECONDS
    a.release("q")
    assert not a.acquire("q")
    clock.now += QUANTUM_SECONDS
    assert a.acquire("q")


def test_a_slot_freed_by_one_queue_of_a_consumer_wakes_it_for_its_other_queue() -> None:
    slots, woken, [a], _ = _pool(2, "a")
    assert _take(a, "q", 2) == 2
    a.demand("r", 2, 10)  # the same Consumer's other queue type: shares 1 and 1
    assert not a.acquire("r")
    assert a.surplus("q")
    woken_before = woken.of("a")
    a.release("q")  # q's worker stops at its batch end
    assert woken.of("a") == woken_before + 1  # told to look again: for r
    assert a.acquire("r") and slots.free == 0


def test_a_closed_client_gives_back_every_slot_and_the_waiting_are_woken() -> None:
    slots, woken, [a, b], _ = _pool(2, "a", "b")
    assert _take(a, "q", 2) + _take(a, "r", 2) == 2
    b.demand("q", 2, 10)
    a.close()
    assert slots.held == 0 and woken.of("b") >= 1
    assert _take(b, "q", 2) == 2
    a.release("q")  # a closed client does nothing
    a.demand("q", 5, 10)
    assert not a.acquire("q") and slots.held == 2


def test_a_release_with_no_slot_held_is_ignored() -> None:
    slots, _, [a], _ = _pool(2, "a")
    a.release("q")
    assert _take(a, "q", 1) == 1
    a.release("q")
    a.release("q")
    assert slots.held == 0 and slots.free == 2


def test_the_pool_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="size"):
        WorkerSlots(0)
    with pytest.raises(ValueError, match="size"):
        WorkerSlots(2).resize(0)


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["demand", "acquire", "release", "surplus-release", "close", "tick"]),
        st.integers(0, 2),  # client
        st.sampled_from(["q", "r"]),
        st.integers(0, 6),  # demand
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 5), ops=_OPS)
def test_no_sequence_of_calls_holds_more_slots_than_the_pool_or_than_demanded(
    size: int, ops: list[tuple[str, int, str, int]]
) -> None:
    slots, _, clients, clock = _pool(size, "a", "b", "c")
    demands: dict[tuple[int, str], int] = {}
    for op, index, queue, demand in ops:
        client = clients[index]
        if op == "demand":
            client.demand(queue, demand, 1 + index)
            demands[index, queue] = demand
        elif op == "acquire":
            held = client.held(queue)
            granted = client.acquire(queue)
            if granted:
                assert client.held(queue) == held + 1
                assert held < demands.get((index, queue), 0)  # never past the demand
        elif op == "release":
            client.release(queue)
        elif op == "surplus-release":
            if client.surplus(queue):
                client.release(queue)
        elif op == "close":
            client.close()
            clients[index] = slots.client("again", lambda: None)
            demands = {k: v for k, v in demands.items() if k[0] != index}
        else:
            clock.now += QUANTUM_SECONDS
        assert 0 <= slots.held <= size
        assert slots.held == sum(c.held(name) for c in clients for name in ("q", "r"))
        waiting = any(slots._waiting(h) for h in slots._holdings.values())
        assert slots.contended == (slots.free == 0 and waiting)
