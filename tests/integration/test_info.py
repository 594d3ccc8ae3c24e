"""Roger's Info, NodeInfo and ApplySystem on real nodes and the real broker.

One node (``tests.cluster_harness.Cluster``: its own System exchange prefix,
so ``roger.System.call`` sees only the test's nodes) for every NodeInfo and
Info function, ``Info.queued_jobs`` (order kept, queue untouched), bad
``node_info`` requests and the partition commands; two nodes for
``Info.running_jobs`` across the cluster.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import cbor2
import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors.node.info import _apply, to_job
from roger_actors.system_protocol import CommandError
from tests.cluster_harness import Cluster
from tests.partition_harness import counts, drain, publish_raw, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(60)

#: The ``cluster`` fixture gives its nodes a cluster secret.
SIGNED_CLUSTER = True



def _only(replies: list[tuple[str, Any]], node: str) -> Any:
    """The value of the one reply, which must come from ``node``."""
    assert [name for name, _ in replies] == [node], replies
    return replies[0][1]


def _error(replies: list[tuple[str, Any]], node: str) -> str:
    value = _only(replies, node)
    assert isinstance(value, CommandError), value
    return value.message


def _queue_type(name: str) -> str:
    """The broker's type of queue ``name`` (``classic``, ``quorum``...)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name", "type"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    types = dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)
    return types[name].strip()


# ---------------------------------------------------------------- pure parts


def test_a_job_map_of_an_unknown_type_stays_a_map() -> None:
    known = roger.Job.create(TimedJob, ["/nowhere", "t", 0])
    job = to_job(cbor2.loads(known.encode()))
    assert isinstance(job, TimedJob)
    assert (job.id, job.args) == (known.id, known.args)
    payload = {"v": 1, "id": "abc", "module": "nowhere_at_all.SomeJob", "args": [1]}
    assert to_job(payload) == payload
    assert "invalid" in to_job([1, 2])


def test_the_facades_need_a_node() -> None:
    with pytest.raises(roger.NotStartedError):
        roger.NodeInfo.partitions()
    with pytest.raises(roger.NotStartedError):
        roger.Info.queued_jobs("tp-x", "default")


# ---------------------------------------------------------------- one node


def test_partitions_on_this_node_and_in_the_cluster(cluster: Cluster) -> None:
    cluster.start()
    h, me = cluster.harness, cluster.node_name
    pid = h.start_partition({"default": 2, "other": 0})
    parts = roger.NodeInfo.partitions()
    assert parts == {"running": {pid: {"default": 2, "other": 0}}, "waiting": {}}
    assert roger.NodeInfo.running_partition_ids() == [pid]
    assert roger.NodeInfo.waiting_partitions() == {}
    running = roger.NodeInfo.running_partitions()
    assert set(running) == {pid}
    assert running[pid]["default"] == {
        "max_workers": 2, "paused": False, "message_count": 0, "consumer_count": 1,
    }
    assert running[pid]["other"]["max_workers"] == 0
    assert running[pid]["other"]["consumer_count"] == 0

    assert roger.Info.partitions() == {me: parts}
    assert roger.Info.running_partitions() == {me: running}
    assert roger.Info.waiting_partitions() == {me: {}}

    second = h.start_partition({"default": 1}, name="q")
    assert roger.NodeInfo.running_partition_ids() == sorted([pid, second])
    roger.Partition.stop(second)
    assert roger.NodeInfo.running_partition_ids() == [pid]


def test_running_jobs_and_worker_pids(cluster: Cluster) -> None:
    cluster.start()
    h, me = cluster.harness, cluster.node_name
    pid = h.start_partition({"default": 2})
    assert roger.NodeInfo.running_jobs() == {pid: []}
    assert roger.NodeInfo.running_worker_pids() == []
    jobs = [h.enqueue(TimedJob, pid, tag, 4) for tag in ("a", "b")]
    starts = h.wait_events("start", 2)
    ids = sorted(job.id for job in jobs)

    local = roger.NodeInfo.running_jobs()
    assert set(local) == {pid}
    assert all(isinstance(job, TimedJob) for job in local[pid])
    assert sorted(job.id for job in local[pid]) == ids
    assert {job.args[1] for job in local[pid]} == {"a", "b"}
    assert all(job.started_at is not None and job.started_at > 0 for job in local[pid])
    assert sorted(job.id for job in roger.NodeInfo.running_jobs(pid)) == ids
    assert roger.NodeInfo.running_jobs(h.partition_id("absent")) == []
    assert roger.NodeInfo.running_worker_pids() == sorted({e["pid"] for e in starts})

    everywhere = roger.Info.running_jobs()
    assert set(everywhere) == {me} and set(everywhere[me]) == {pid}
    assert sorted(job.id for job in everywhere[me][pid]) == ids
    one = roger.Info.running_jobs(pid)
    assert set(one) == {me}
    assert sorted(job.id for job in one[me]) == ids
    assert all(isinstance(job, TimedJob) for job in one[me])

    h.wait_events("end", 2)
    wait_for(lambda: roger.NodeInfo.running_jobs() == {pid: []}, what="no job running")
    assert roger.NodeInfo.running_worker_pids() == []


def test_jobs_waiting_in_a_workers_batch_are_not_reported_running(cluster: Cluster) -> None:
    cluster.start()
    h = cluster.harness
    pid = h.start_partition({"default": 1})
    for i in range(40):  # quick jobs: the next ones travel in batches
        h.enqueue(TimedJob, pid, f"warm{i}", 0)
    h.wait_events("end", 40)
    roger.Consumer.pause(pid, "default")
    # On resume "first" goes alone to the idle worker; the others arrive while
    # it runs and go together as the worker's next batch.
    h.enqueue(TimedJob, pid, "first", 0.02)
    blocker = h.enqueue(TimedJob, pid, "blocker", 2)
    for tag in ("second", "third"):
        h.enqueue(TimedJob, pid, tag, 0)
    roger.Consumer.resume(pid, "default")
    wait_for(lambda: "blocker" in h.tags("start"), what="the blocker running")

    assert [job.id for job in roger.NodeInfo.running_jobs(pid)] == [blocker.id]
    h.wait_tags("end", {"blocker", "second", "third"})


def test_queued_jobs_newest_first_and_the_queue_untouched(cluster: Cluster) -> None:
    cluster.start()
    h = cluster.harness
    pid = h.start_partition({"default": 0})  # the queue exists, nobody consumes it
    queue = Queue.make_name(pid, "default")
    jobs = [h.enqueue(TimedJob, pid, f"j{i}", 0) for i in range(6)]
    ids = [job.id for job in jobs]
    stranger = {"v": 1, "id": "stranger-1", "module": "nowhere_at_all.SomeJob", "args": []}
    publish_raw(queue, cbor2.dumps(stranger), message_id="stranger-1")
    publish_raw(queue, b"\xff not a job", message_id="garbage-1")
    wait_for(lambda: (counts(queue) or (0, 0))[0] == 8, what="8 messages queued")
    assert _queue_type(queue) == "quorum"

    seen = roger.Info.queued_jobs(pid, "default")
    assert len(seen) == 8
    garbage, unknown, *queued = seen
    assert isinstance(garbage, dict) and garbage["body"] == b"\xff not a job"
    assert "invalid" in garbage
    assert unknown == stranger
    assert [job.id for job in queued] == list(reversed(ids))
    assert all(isinstance(job, TimedJob) for job in queued)

    # The first `count` messages, newest of them first; the look repeats exactly.
    # (On a quorum queue a look of fewer messages than the earlier looks returned
    # would rotate them: this is what the repeated small looks check.)
    for count in (3, 3, 5, 1, 3):
        first = roger.Info.queued_jobs(pid, "default", count=count)
        expected = list(reversed(ids[:count]))
        assert [job.id for job in first] == expected, count
    assert roger.Info.queued_jobs(pid, "default", count=0) == []
    assert roger.Info.queued_jobs(pid, "nothing_here") == []
    with pytest.raises(ValueError):
        roger.Info.queued_jobs(pid, "default", count=-1)

    # Untouched: the same messages, in the same order, all still there. (A quorum
    # queue counts the messages a closed channel gave back a moment after its
    # close-ok, so the count is awaited, bounded.)
    wait_for(lambda: (counts(queue) or (0, 0))[0] == 8, what="8 messages back in the queue")
    left = drain(queue)
    assert [message_id for _, _, message_id in left] == [*ids, "stranger-1", "garbage-1"]


def test_bad_node_info_requests_get_errors_and_apply_system_lives_on(cluster: Cluster) -> None:
    cluster.start()
    me = cluster.node_name
    address = cluster.node._child_address("apply_system")
    assert address is not None
    bad: list[tuple[tuple[Any, ...], str]] = [
        ((), "node_info expects [what, *params]"),
        ((7,), "node_info expects [what, *params]"),
        (("everything",), "unknown what 'everything'"),
        (("partitions", 1), "'partitions' takes 0 to 0 parameters, got 1"),
        (("running_jobs", "a", "b"), "'running_jobs' takes 0 to 1 parameters, got 2"),
        (("running_jobs", 12), "partition_id must be a str"),
        (("running_jobs", ""), "partition_id must be a non-empty str"),
    ]
    for args, message in bad:
        assert message in _error(roger.System.call("node_info", *args), me), args
    for args, message in bad:  # the same on this node only: raised at the caller
        with pytest.raises((ValueError, TypeError), match=re.escape(message)):
            _apply("node_info", *args)
    with pytest.raises(ValueError, match="unknown apply command"):
        _apply("no_such_thing")
    assert _only(roger.System.call("node_info", "partitions"), me) == {
        "running": {}, "waiting": {}
    }
    assert cluster.node._child_address("apply_system") == address, "ApplySystem was restarted"


def test_partition_commands_through_the_system(cluster: Cluster) -> None:
    cluster.start()
    h, me = cluster.harness, cluster.node_name
    pid = h.partition_id("cmd")
    call = roger.System.call

    assert _only(call("partition_start", pid, {"default": 1}, None), me) == "ok"
    wait_for(lambda: pid in roger.NodeInfo.running_partition_ids(), what="started")
    assert roger.NodeInfo.partitions()["running"][pid] == {"default": 1}

    queues = {"default": 2, "extra": 1}
    assert _only(call("partition_reconfigure", pid, queues, me), me) == "ok"
    wait_for(
        lambda: roger.NodeInfo.partitions()["running"].get(pid) == queues, what="reconfigured"
    )
    wait_for(
        lambda: roger.NodeInfo.running_partitions().get(pid, {}).get("extra", {}).get(
            "consumer_count"
        ) == 1,
        what="the new queue consumed",
    )

    # Addressed to another node: skipped here.
    assert _only(call("partition_start", pid, {"default": 5}, "elsewhere"), me) == "skipped"
    assert _only(call("partition_reconfigure", pid, {"x": 1}, "elsewhere"), me) == "skipped"
    assert _only(call("partition_stop", pid, "elsewhere"), me) == "skipped"
    assert roger.NodeInfo.partitions()["running"][pid] == queues

    # Without node_name (left out entirely, too): every node.
    assert _only(call("partition_stop", pid), me) == "ok"
    assert pid not in roger.NodeInfo.partitions()["running"]
    assert "is not running on this node" in _error(call("partition_stop", pid, None), me)
    message = _error(call("partition_reconfigure", pid, {"default": 1}, None), me)
    assert "NotRunningError" in message and "is not running" in message

    # Bad input: an error reply naming it, and nothing started.
    for args, expected in [
        ((), "partition_start expects [partition_id, queues, node_name|None]"),
        ((pid,), "partition_start expects"),
        ((pid, "default"), "queues must be a mapping"),
        ((pid, {"default": -1}), "queues.default"),
        ((12, {"default": 1}), "partition_id must be a str"),
        ((pid, {"default": 1}, 5), "node_name must be a str or None"),
        ((pid, {"default": 1}, None, "more"), "partition_start expects"),
    ]:
        assert expected in _error(call("partition_start", *args), me), args
    assert "partition_stop expects" in _error(call("partition_stop"), me)
    assert roger.NodeInfo.partitions() == {"running": {}, "waiting": {}}


# ---------------------------------------------------------------- two nodes


def test_info_running_jobs_sees_a_long_job_on_each_node(cluster: Cluster) -> None:
    cluster.start()
    h, me = cluster.harness, cluster.node_name
    other = f"n2-{h.tag}"
    pid = h.partition_id("two")
    roger.Partition.start(pid, {"default": 1})
    cluster.start_other(
        other,
        partitions={pid: {"remote": 1}},
        callbacks="tests.roger_test_jobs2:JsonCallbacks",
        allowed_job_modules=["tests"],
    )
    wait_for(
        lambda: (counts(Queue.make_name(pid, "remote")) or (0, 0))[1] == 1,
        30,
        what="node 2 consuming remote",
    )
    here = h.enqueue(TimedJob, pid, "here", 6)
    there = h.enqueue(TimedJob, pid, "there", 6, queue="remote")
    starts = h.wait_events("start", 2)
    assert len({e["pid"] for e in starts}) == 2

    everywhere = roger.Info.running_jobs()
    assert set(everywhere) == {me, other}
    assert [job.id for job in everywhere[me][pid]] == [here.id]
    assert [job.id for job in everywhere[other][pid]] == [there.id]
    assert all(isinstance(job, TimedJob) for node in everywhere.values() for job in node[pid])

    one = roger.Info.running_jobs(pid)
    assert {node: [job.id for job in jobs] for node, jobs in one.items()} == {
        me: [here.id], other: [there.id],
    }
    parts = roger.Info.partitions()
    assert parts[me]["running"] == {pid: {"default": 1}}
    assert parts[other]["running"] == {pid: {"remote": 1}}
    h.wait_events("end", 2)
