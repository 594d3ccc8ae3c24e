"""Specification of a partition's and a node's lifecycle calls, as in Roger:
``Partition.start`` answers once the partition runs, ``Partition.safe_stop``
pauses a partition that stays, ``System.set_inactive`` makes a node start
no partition and ``System.unsubscribe_all`` makes an inactive node stop
taking jobs while it still answers System commands.

Each test starts its own node against the RabbitMQ on 127.0.0.1:5672 (see
``tests.partition_harness``). Run one with
``scripts/test tests/integration/test_node_lifecycle.py::<name>``.
"""

from __future__ import annotations

import os

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.node import registry
from roger_actors.partition.consumer import Status
from roger_actors.persisters import Stub
from supervision import CallTimeout, NoProc
from tests.partition_harness import (
    NodeHarness,
    counts,
    holds_for,
    is_alive,
    parent_of,
    wait_for,
)
from tests.procs import sigkill
from tests.roger_test_jobs2 import PlainFailJob, TimedJob

pytestmark = pytest.mark.timeout(60)


class FailsOnce(Stub):
    """A persister whose first construction fails (the partition's Global, and
    so the partition's tree, then fails to start); later ones work."""

    def __init__(self, marker: str) -> None:
        if not os.path.exists(marker):
            with open(marker, "w"):
                pass
            raise RuntimeError("first start fails")
        super().__init__()


@pytest.fixture
def h(request: pytest.FixtureRequest, h: NodeHarness) -> NodeHarness:
    """The harness of conftest, with its node started (with the FailsOnce
    persister for tests marked ``fails_once``)."""
    if request.node.get_closest_marker("fails_once") is not None:
        marker = h.tmp_path / "persister-started"
        marker.touch()  # the harness's probe partition starts
        h.start(persister=FailsOnce, persister_options={"marker": str(marker)})
        marker.unlink()  # the next partition's start fails once
    else:
        h.start()
    return h


@pytest.mark.fails_once
def test_a_partition_whose_start_failed_waits_and_is_started_again(h: NodeHarness) -> None:
    pid = h.partition_id()
    with pytest.raises(roger.RogerError):
        roger.Partition.start(pid, {"default": 1})
    assert pid in roger.Partition.partitions()["waiting"]
    wait_for(lambda: pid in roger.NodeInfo.running_partitions(), what="the partition started again")
    h.enqueue(TimedJob, pid, "runs", 0)
    h.wait_tags("end", {"runs"})


def test_partition_start_returns_once_the_partition_runs(h: NodeHarness) -> None:
    pid = h.partition_id()
    assert roger.Partition.start(pid, {"default": 1}) == "running"
    # At once, with no polling: listed as running, its Global answers.
    assert pid in roger.NodeInfo.running_partitions()
    assert roger.Global.is_queued(pid, "k", add=True) is False
    # Starting it again reconfigures it; it still runs.
    assert roger.Partition.start(pid, {"default": 2}) == "running"
    assert roger.Consumer.get_queues(pid)["default"]["max_workers"] == 2


def test_an_inactive_node_starts_no_partition_and_lists_it_as_waiting(h: NodeHarness) -> None:
    roger.System.set_inactive()
    assert not roger.System.is_active()
    pid = h.partition_id()
    assert roger.Partition.start(pid, {"default": 1}) == "waiting"
    assert roger.Partition.partitions()["waiting"] == {pid: {"default": 1}}
    assert pid not in roger.NodeInfo.running_partitions()
    assert not roger.Consumer.is_alive(pid)
    # A second start updates its queues; it still waits.
    assert roger.Partition.start(pid, {"default": 3}) == "waiting"
    assert roger.Partition.partitions()["waiting"] == {pid: {"default": 3}}
    roger.Partition.stop(pid)
    assert pid not in roger.Partition.partitions()["waiting"]


def test_safe_stop_pauses_every_queue_lets_the_running_job_finish_and_the_partition_stays(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1, "other": 1})
    h.enqueue(TimedJob, pid, "long", 1.0)
    h.wait_tags("start", {"long"})

    roger.Partition.safe_stop(pid)

    queues = roger.Consumer.get_queues(pid)
    assert queues["default"]["paused"] and queues["other"]["paused"]
    h.enqueue(TimedJob, pid, "held", 0)
    h.wait_tags("after_run", {"long"})
    holds_for(lambda: "held" not in h.tags("start"), 1.0, what="the paused queue holding its job")
    assert pid in roger.NodeInfo.running_partitions(), "the partition went away"
    # Resumable, as in Roger.
    roger.Consumer.resume(pid, "default")
    h.wait_tags("end", {"held"})


def test_unsubscribe_all_on_an_active_node_changes_nothing(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})
    roger.System.unsubscribe_all()
    assert not roger.Consumer.get_queues(pid)["default"]["paused"]
    h.enqueue(TimedJob, pid, "runs", 0)
    h.wait_tags("end", {"runs"})


def test_unsubscribe_all_on_an_inactive_node_stops_consuming_jobs_and_commands_still_work(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    other = h.start_partition({"default": 1}, name="q")
    roger.System.set_inactive()
    roger.System.unsubscribe_all()

    for partition in (pid, other):
        assert roger.Consumer.get_queues(partition)["default"]["paused"]
    h.enqueue(TimedJob, pid, "held", 0)
    holds_for(lambda: not h.tags("start"), 1.0, what="no job running after unsubscribe_all")
    assert counts(Queue.make_name(pid, "default")) == (1, 0)
    # The node still takes System commands.
    assert h.node is not None
    assert (h.node.config.node_name, "pong") in roger.System.call("ping")


def test_consumer_reconfigure_sets_the_queues_and_ignores_a_partition_not_here(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    roger.Consumer.reconfigure(pid, [Queue.define("default", 2), Queue.define("extra", 1)])
    queues = roger.Consumer.get_queues(pid)
    assert {name: q["max_workers"] for name, q in queues.items()} == {"default": 2, "extra": 1}
    # Roger's facade answers :ok for a partition whose Consumer is not alive.
    roger.Consumer.reconfigure(h.partition_id("elsewhere"), {"default": 1})
    assert h.partition_ids[-1] not in roger.Partition.partitions()["waiting"]
    with pytest.raises(ValueError, match="max_workers"):
        roger.Consumer.reconfigure(pid, {"default": -1})


def test_worker_run_runs_a_payload_with_the_callbacks_and_returns_its_outcome(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    ok = roger.Job.create(TimedJob, [h.journal, "direct", 0])
    assert roger.Worker.run(pid, roger.Job.encode(ok)) == "done"
    assert h.tags("after_run") == {"direct"}, "after_run ran (in this process, at once)"
    failing = roger.Job.create(PlainFailJob, [h.journal, "fails"])
    assert roger.Worker.run(pid, roger.Job.encode(failing)) == "error"
    assert "fails" in h.tags("on_error")
    # A cancelled job is not run: on_cancel instead.
    cancelled = roger.Job.create(TimedJob, [h.journal, "cancelled", 0])
    roger.Global.cancel_job(pid, cancelled.id)
    assert roger.Worker.run(pid, roger.Job.encode(cancelled)) == "cancelled"
    assert "cancelled" not in h.tags("start")
    # Nothing went through the broker.
    assert counts(Queue.make_name(pid, "default")) == (0, 1)  # (messages, consumers)
    with pytest.raises(roger.InvalidJobError):
        roger.Worker.run(pid, b"not a job")
    with pytest.raises(roger.NotRunningError):
        roger.Worker.run(h.partition_id("elsewhere"), roger.Job.encode(ok))


def test_a_partition_crashing_again_and_again_never_takes_the_node_down(
    h: NodeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short back-off (the registry's actor process is forked with these).
    monkeypatch.setattr(registry, "RESTART_FIRST", 0.05)
    monkeypatch.setattr(registry, "RESTART_CAP", 0.2)
    roger.stop()
    h.start()
    steady = h.start_partition({"default": 1}, name="steady")
    flaky = h.start_partition({"default": 1}, name="flaky")

    def containing_supervisor(pid: str) -> int | None:
        """The partition's ContainingSupervisor (its Consumer's grandparent),
        or None between two trees.

        A tree dying meanwhile reparents its processes to pid 1 (whose
        parent reads as 0) or to this process (the actor system's starter):
        a process reparented so, or pid 0 or 1, is never taken."""
        try:
            consumer = roger_node.current().consumer_call(pid, Status(), timeout=2)["pid"]
        except (roger.NotRunningError, CallTimeout, NoProc):
            return None
        jobs = parent_of(consumer)
        found = parent_of(jobs) if jobs is not None else None
        if found is None or found <= 1 or found == os.getpid():
            return None
        return found if parent_of(found) not in (None, 1, os.getpid()) else None

    victim = containing_supervisor(flaky)
    assert victim is not None
    partition_sup = parent_of(victim)
    # Far more crashes than the PartitionSupervisor's intensity (10 in 10 s).
    for _ in range(25):
        sigkill(victim)
        seen: list[int] = []

        def running_again(killed: int = victim, seen: list[int] = seen) -> bool:
            sup = containing_supervisor(flaky)
            if sup is None or sup == killed:
                return False
            seen.append(sup)
            return flaky in roger.Partition.partitions()["running"]

        wait_for(running_again, what="the partition running again")
        victim = seen[-1]
    assert partition_sup is not None and is_alive(partition_sup), "the PartitionSupervisor gave up"

    def under_the_same_partition_supervisor() -> bool:
        sup = containing_supervisor(flaky)
        return sup is not None and parent_of(sup) == partition_sup

    wait_for(under_the_same_partition_supervisor, what="the partition under the same supervisor")
    assert steady in roger.NodeInfo.running_partitions()
    h.enqueue(TimedJob, steady, "still", 0)
    h.enqueue(TimedJob, flaky, "again", 0)
    h.wait_tags("end", {"still", "again"})


def _start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[19])


def test_a_restarted_registry_takes_the_running_partitions_back(h: NodeHarness) -> None:
    """The registry is SIGKILLed and its supervisor starts a new one. The
    partitions it had started still run, but report to the old registry: the
    new one replaces their trees with ones that report to it, lists them as
    running again, and their jobs run."""
    from tests.procs import live_children

    pid = h.start_partition({"default": 1})
    consumer = roger_node.current().consumer_call(pid, Status(), timeout=5)["pid"]
    containing = parent_of(parent_of(consumer) or 0) or 0
    partition_sup = parent_of(containing)
    assert partition_sup is not None
    root = parent_of(partition_sup)
    assert root is not None
    # The root's children in start order: system, partitions, registry, ...
    children = sorted(live_children(root), key=_start_time)
    registry_pid = children[children.index(partition_sup) + 1]
    sigkill(registry_pid)

    def taken_back() -> bool:
        try:
            running = roger.Partition.partitions()["running"]
            now = roger_node.current().consumer_call(pid, Status(), timeout=2)["pid"]
        except (roger.NotRunningError, CallTimeout, NoProc):
            return False
        return pid in running and now != consumer

    wait_for(taken_back, timeout=30, what="the partition running under the new registry")
    h.enqueue(TimedJob, pid, "after", 0)
    h.wait_tags("after_run", {"after"})
