"""Roger's Global across two nodes on one machine sharing the broker: cancel
reaches a job wherever it runs or waits, pause is cluster-wide (also for a
node that starts later), execution keys exclude across nodes, and the state
survives when the active Global's process is SIGKILLed (another node's
Global takes over with the persisted snapshot).

The in-process node is node 1; node 2 is a separate process
(``tests.cluster_harness``). Jobs of both report to one journal file.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest

import roger_actors as roger
from roger_actors import Queue
from tests.cluster_harness import Cluster
from tests.partition_harness import BROKER, counts, holds_for, is_alive, wait_for
from tests.procs import sigkill
from tests.roger_test_jobs2 import KeyedJob, TimedJob

pytestmark = pytest.mark.timeout(150)

#: The cluster fixture gives every node a cluster secret (signed traffic).
SIGNED_CLUSTER = True
PERSISTER = {
    "persister": "roger_actors.persisters:RabbitMQ",
    "persister_options": {"url": BROKER},
}



def _start_two(cluster: Cluster, node1: dict[str, int], node2: dict[str, int]) -> str:
    """Node 1 (here) runs the partition first, so its Global is the active one;
    then node 2 starts it too. Returns the partition id."""
    cluster.start(**PERSISTER)
    h = cluster.harness
    pid = h.partition_id("g")
    roger.Partition.start(pid, node1)
    wait_for(lambda: pid in roger.Partition.partitions()["running"], what="node 1 running it")
    roger.Global.queue_get_paused(pid)  # node 1's Global serves: it is the active one
    cluster.start_other(
        f"n2-{h.tag}",
        partitions={pid: node2},
        callbacks="tests.roger_test_jobs2:JsonCallbacks",
        allowed_job_modules=["tests"],
        **PERSISTER,
    )
    shared = [q for q in node2 if q in node1 and node1[q] > 0 and node2[q] > 0]
    for queue in shared:
        wait_for(
            lambda q=queue: (counts(Queue.make_name(pid, q)) or (0, 0))[1] == 2,
            30,
            what=f"both nodes consuming {queue}",
        )
    return pid


def _consumers(pid: str, queue: str) -> int:
    found = counts(Queue.make_name(pid, queue))
    return found[1] if found is not None else 0


def test_a_cancel_kills_a_job_running_on_the_other_node(cluster: Cluster) -> None:
    pid = _start_two(cluster, {"default": 1}, {"default": 1, "remote": 1})
    h = cluster.harness
    wait_for(lambda: _consumers(pid, "remote") == 1, 30, what="node 2 consuming remote")
    job = h.enqueue(TimedJob, pid, "far", 60, queue="remote")
    [start] = h.wait_events("start", 1, timeout=30)

    roger.Global.cancel_job(pid, job.id)

    h.wait_tags("on_cancel", {"far"})
    wait_for(lambda: not is_alive(start["pid"]), what="node 2's worker killed")
    assert "far" not in h.tags("end")
    assert len(h.events("on_cancel")) == 1
    wait_for(
        lambda: counts(Queue.make_name(pid, "remote")) == (0, 1), what="the job acked on node 2"
    )


def test_a_cluster_pause_holds_a_node_started_later_and_queued_cancels_reach_it(
    cluster: Cluster,
) -> None:
    cluster.start(**PERSISTER)
    h = cluster.harness
    pid = h.partition_id("g")
    roger.Partition.start(pid, {"default": 1})
    wait_for(lambda: pid in roger.Partition.partitions()["running"], what="node 1 running it")
    roger.Global.queue_pause(pid, "remote")
    held = h.enqueue(TimedJob, pid, "held", 0, queue="remote")
    doomed = h.enqueue(TimedJob, pid, "doomed", 0, queue="remote")

    cluster.start_other(
        f"n2-{h.tag}",
        partitions={pid: {"default": 1, "remote": 1}},
        callbacks="tests.roger_test_jobs2:JsonCallbacks",
        allowed_job_modules=["tests"],
        **PERSISTER,
    )
    wait_for(lambda: _consumers(pid, "default") == 2, 30, what="node 2 consuming default")
    holds_for(lambda: _consumers(pid, "remote") == 0, 1.5, "node 2 does not consume remote")
    roger.Global.cancel_job(pid, doomed.id)

    roger.Global.queue_resume(pid, "remote")
    h.wait_tags("end", {"held"}, timeout=30)
    h.wait_tags("on_cancel", {"doomed"})
    assert "doomed" not in h.tags("start")
    assert held.id != doomed.id


def test_jobs_with_one_execution_key_never_overlap_across_nodes(cluster: Cluster) -> None:
    pid = _start_two(cluster, {"default": 3}, {"default": 3})
    h = cluster.harness
    tags = [f"k{i}" for i in range(8)]
    for tag in tags:
        h.enqueue(KeyedJob, pid, tag, 0.2, None, "ledger")

    h.wait_tags("end", set(tags), timeout=60)
    starts = {e["tag"]: e for e in h.events("start")}
    ends = {e["tag"]: e["t"] for e in h.events("end")}
    ordered = sorted(tags, key=lambda t: starts[t]["t"])
    for earlier, later in itertools.pairwise(ordered):
        assert ends[earlier] <= starts[later]["t"], f"{earlier} and {later} overlapped"
    worker_supervisors = {starts[t]["ppid"] for t in tags}
    assert len(worker_supervisors) == 2, "both nodes ran jobs of the key"
    # The last job's Consumer releases the key after the job's end event.
    wait_for(lambda: not roger.Global.is_executing(pid, "ledger"), what="the key released")


def test_killing_the_active_global_fails_over_to_the_other_node_with_the_state(
    cluster: Cluster,
) -> None:
    pid = _start_two(cluster, {"default": 1}, {"default": 1})
    h = cluster.harness
    roger.Global.cancel_job(pid, "kept")
    roger.Global.queue_pause(pid, "parked")
    # No waiting for a save: an answered change is already stored.
    before: dict[str, Any] = h.global_status(pid)
    assert before["served"] >= 3, "node 1's Global was the active one"

    sigkill(before["pid"])
    began = time.monotonic()
    assert roger.Global.is_cancelled(pid, "kept") is True
    assert roger.Global.queue_get_paused(pid) == {"parked"}
    roger.Global.cancel_job(pid, "after-failover")
    assert roger.Global.is_cancelled(pid, "after-failover") is True
    assert time.monotonic() - began < 5.0

    after = h.global_status(pid)
    assert after["pid"] != before["pid"]
    assert after["served"] == 0, "node 2's Global answered, not node 1's restarted one"
