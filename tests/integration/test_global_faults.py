"""Global under faults, with the default Stub persister (nothing stored):
the cluster-wide state survives a dropped broker connection, a SIGKILLed
active Global and a Global that comes back with an old state; jobs with one
execution key never run at once, not even a redelivered copy of a job whose
first copy still runs, and a key held by a dead node is taken over.

Connections are closed by name (only this test's own, never all of the
shared broker's); node 2 is a process of its own (``tests.cluster_harness``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors.partition import execution_fence
from roger_actors.partition.global_server import replica_queue_name
from tests.cluster_harness import Cluster
from tests.partition_harness import (
    NodeHarness,
    close_connections_named,
    counts,
    delete_queues,
    holds_for,
    wait_for,
)
from tests.procs import sigkill
from tests.roger_test_jobs2 import KeyedJob

pytestmark = pytest.mark.timeout(150)

NODE2 = {"callbacks": "tests.roger_test_jobs2:JsonCallbacks", "allowed_job_modules": ["tests"]}


@pytest.fixture(autouse=True)
def _replica_queues(request: pytest.FixtureRequest) -> Iterator[None]:
    """Delete the replica queues of the test's partitions afterwards."""
    name = "h" if "h" in request.fixturenames else "cluster"
    found = request.getfixturevalue(name)
    harness: NodeHarness = found if isinstance(found, NodeHarness) else found.harness
    yield
    delete_queues([replica_queue_name(pid) for pid in harness.partition_ids])


def _runs(h: NodeHarness, tag: str) -> list[tuple[float, float | None]]:
    """``(start, end)`` wall times of each run of the job tagged ``tag``,
    in start order (end None while it runs or when it was killed)."""
    starts = sorted(e["t"] for e in h.events("start") if e["tag"] == tag)
    ends = sorted(e["t"] for e in h.events("end") if e["tag"] == tag)
    return [(s, ends[i] if i < len(ends) else None) for i, s in enumerate(starts)]


def _set_state(pid: str) -> None:
    roger.Global.cancel_job(pid, "kept")
    roger.Global.queue_pause(pid, "held")
    assert roger.Global.is_queued(pid, "qk", add=True) is False


def _state_kept(pid: str) -> None:
    assert roger.Global.is_cancelled(pid, "kept") is True
    assert roger.Global.queue_get_paused(pid) == {"held"}
    assert roger.Global.is_queued(pid, "qk") is True


def test_the_replica_queue_comes_with_the_first_change_and_a_restart_takes_the_state_from_it(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Global.queue_get_paused(pid)  # answered: the Global took over, from nothing
    assert counts(replica_queue_name(pid)) is None, "no state yet: no replica queue"

    _set_state(pid)
    assert counts(replica_queue_name(pid)) is not None, "declared by the first replica"
    roger.Partition.stop(pid)
    wait_for(lambda: pid not in roger.Partition.partitions()["running"], what="stopped")
    assert roger.Partition.start(pid, {"default": 1}) == "running"
    _state_kept(pid)  # with the Stub persister, only the replica queue had it


def test_a_dropped_connection_keeps_the_state_and_a_redelivered_copy_waits_for_the_first(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    _set_state(pid)
    job = h.enqueue(KeyedJob, pid, "first", 4, None, "ledger")
    wait_for(lambda: _runs(h, "first"), what="the keyed job running")

    # The node's Global and Consumer lose their connections; the job keeps
    # running, and the broker delivers it again to the reconnected Consumer.
    assert close_connections_named(h.connection_name) >= 2
    runs = wait_for(
        lambda: (r := _runs(h, "first")) and len(r) == 2 and r[1][1] is not None and r,
        40,
        what="the job run again (at least once) after its first run",
    )
    first, copy = runs
    assert first[1] is not None and copy[0] >= first[1], f"the two copies overlapped: {runs}"
    _state_kept(pid)
    wait_for(lambda: not roger.Global.is_executing(pid, "ledger"), what="the key free at last")
    assert job.execution_key == "ledger"


def _start_two(cluster: Cluster, node1: dict[str, int], node2: dict[str, int]) -> str:
    """Node 1 (here, its Global active) and node 2 (a process) run the partition."""
    cluster.start()
    h = cluster.harness
    pid = h.partition_id("g")
    roger.Partition.start(pid, node1)
    wait_for(lambda: pid in roger.Partition.partitions()["running"], what="node 1 running it")
    roger.Global.queue_get_paused(pid)  # the only Global yet: node 1's is active
    cluster.start_other(f"n2-{h.tag}", partitions={pid: node2}, **NODE2)
    for queue in node2:
        wait_for(
            lambda q=queue: (counts(Queue.make_name(pid, q)) or (0, 0))[1]
            == (2 if node1.get(q) else 1),
            30,
            what=f"node 2 consuming {queue}",
        )
    assert h.global_status(pid)["loaded"], "node 1's Global is the active one"
    return pid


def test_a_sigkilled_active_global_fails_over_with_the_state_and_the_held_key(
    cluster: Cluster,
) -> None:
    pid = _start_two(cluster, {"default": 2}, {"other": 1})
    h = cluster.harness
    _set_state(pid)
    h.enqueue(KeyedJob, pid, "holder", 6, None, "ledger")
    wait_for(lambda: _runs(h, "holder"), what="the holder running on node 1")
    before: dict[str, Any] = h.global_status(pid)

    sigkill(before["pid"])
    _state_kept(pid)
    assert roger.Global.is_executing(pid, "ledger") is True
    h.enqueue(KeyedJob, pid, "waiter", 0, None, "ledger")

    h.wait_tags("end", {"holder", "waiter"}, timeout=40)
    [(_, holder_end)] = _runs(h, "holder")
    [(waiter_start, _)] = _runs(h, "waiter")
    assert holder_end is not None and waiter_start >= holder_end, "the two jobs overlapped"
    after = h.global_status(pid)
    assert after["pid"] != before["pid"] and not after["loaded"], "node 2's Global took over"


def test_a_global_that_comes_back_does_not_win_with_its_old_state(cluster: Cluster) -> None:
    pid = _start_two(cluster, {"default": 1}, {"default": 1})
    h = cluster.harness
    _set_state(pid)
    old = h.global_status(pid)["version"]

    # Node 1's Global loses its connection: node 2's becomes the active one
    # and changes the state while node 1's still remembers the old one.
    assert close_connections_named(h.connection_name) >= 1
    wait_for(lambda: h.global_status(pid)["connected"], what="node 1's Global reconnected")
    roger.Global.queue_resume(pid, "held")
    roger.Global.cancel_job(pid, "newer")
    assert not h.global_status(pid)["loaded"], "node 2's Global answered"

    # Node 2 dies: node 1's Global is active again and takes the newer state.
    cluster.others[0].kill()
    assert roger.Global.is_cancelled(pid, "newer") is True
    assert roger.Global.queue_get_paused(pid) == set()
    assert roger.Global.is_cancelled(pid, "kept") is True
    assert roger.Global.is_queued(pid, "qk") is True
    assert h.global_status(pid)["version"][0] > old[0]


def test_a_key_held_by_a_dead_node_is_taken_over_and_never_while_it_lives(
    cluster: Cluster,
) -> None:
    pid = _start_two(cluster, {"default": 1}, {"remote": 1})
    h = cluster.harness
    h.enqueue(KeyedJob, pid, "remote-holder", 120, None, "ledger", queue="remote")
    wait_for(lambda: _runs(h, "remote-holder"), 30, what="the holder running on node 2")
    h.enqueue(KeyedJob, pid, "local", 0, None, "ledger")

    # Node 2 lives: its hold is never taken, however long the wait.
    holds_for(
        lambda: not _runs(h, "local"),
        execution_fence.GRACE_SECONDS + 3,
        "the local job waits while the holder runs",
        interval=0.5,
    )
    cluster.others[0].kill()
    # Its job will not come back (nobody else consumes "remote"): once its
    # Consumer is gone for good, the key goes to the waiting job.
    h.wait_tags("end", {"local"}, timeout=execution_fence.GRACE_SECONDS + 30)
