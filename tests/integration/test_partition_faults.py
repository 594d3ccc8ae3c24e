"""Fault specification of a partition on a real node: broker-side connection
loss, a SIGKILLed Consumer, and a broker that cannot be reached.

Same set-up as ``test_partition_data_path``: one node per test on its own
admin port, uuid-suffixed partition ids, queues deleted in teardown, jobs
reporting through a JSON-lines journal, bounded polls only.

Finding the Consumer's process: a worker's parent is the partition's
WorkerSupervisor (not the Consumer), whose parent is the partition's
JobsSupervisor; the JobsSupervisor has exactly two children, the
WorkerSupervisor and the Consumer, so the Consumer is the other one.
"""

from __future__ import annotations

import os
import subprocess

import pytest

import roger_actors as roger
from roger_actors import Queue
from tests.partition_harness import (
    NodeHarness,
    amqp_socket_count,
    close_connections_named,
    counts,
    holds_for,
    is_alive,
    live_children,
    parent_of,
    wait_for,
)
from tests.procs import sigkill
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(60)



def _consumer_pid(h: NodeHarness, pid: str) -> tuple[int, int]:
    """(consumer pid, WorkerSupervisor pid), found through a job's parent process."""
    tag = f"probe-{len(h.events('start'))}"
    h.enqueue(TimedJob, pid, tag, 0)
    start = wait_for(
        lambda: [e for e in h.events("start") if e["tag"] == tag], what="the probe job"
    )[0]
    worker_sup = start["ppid"]
    containing = parent_of(worker_sup)
    assert containing is not None
    [consumer] = [p for p in live_children(containing) if p != worker_sup]
    return consumer, worker_sup


def test_consumer_reconnects_after_the_broker_closes_its_connection_and_no_job_is_lost(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    tags = [f"k{i}" for i in range(10)]
    for tag in tags:
        h.enqueue(TimedJob, pid, tag, 0.4)
    h.wait_events("start", 1)

    assert close_connections_named(h.connection_name) >= 1

    # every job runs (at least once) although some were unacked at the close
    h.wait_tags("after_run", set(tags), timeout=40)
    assert h.tags("start") == set(tags)
    wait_for(lambda: pid in roger.Partition.partitions()["running"], what="connected again")
    wait_for(
        lambda: counts(Queue.make_name(pid, "default")) == (0, 1),
        what="work queue empty, one consumer",
    )
    # and it keeps consuming on the new connection
    h.enqueue(TimedJob, pid, "after-reconnect", 0)
    h.wait_tags("after_run", {"after-reconnect"})


def test_sigkilled_consumer_is_restarted_by_the_partition_supervisor_and_queued_jobs_run(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    consumer, worker_sup = _consumer_pid(h, pid)
    assert amqp_socket_count(consumer) == 1, "that process is not the Consumer"

    sigkill(consumer)
    tags = [f"q{i}" for i in range(4)]
    for tag in tags:
        h.enqueue(TimedJob, pid, tag, 0)

    h.wait_tags("after_run", set(tags), timeout=30)
    assert roger.Consumer.is_alive(pid)
    assert pid in roger.Partition.partitions()["running"]
    new_consumer, new_worker_sup = _consumer_pid(h, pid)
    assert new_consumer != consumer and not is_alive(consumer)
    # one_for_all: the WorkerSupervisor was restarted with the Consumer
    assert new_worker_sup != worker_sup
    assert parent_of(new_consumer) == parent_of(new_worker_sup)
    wait_for(
        lambda: counts(Queue.make_name(pid, "default")) == (0, 1),
        what="work queue empty, one consumer",
    )


def test_partition_with_an_unreachable_broker_is_waiting_and_the_node_lives_on(
    h: NodeHarness,
) -> None:
    h.start(amqp="amqp://guest:guest@127.0.0.1:5999/")
    pid = h.partition_id("unreachable")

    assert roger.Partition.start(pid, {"default": 2}) == "waiting"

    wait_for(
        lambda: roger.Partition.partitions()["waiting"].get(pid) == {"default": 2},
        what="the partition listed as waiting",
    )
    # the consumer retries with back-off (0.5, 1, 2 s...): watch a few attempts
    holds_for(
        lambda: roger.Partition.partitions() == {"running": {}, "waiting": {pid: {"default": 2}}},
        4.0,
        "the partition stays waiting and the node answers",
        interval=0.25,
    )
    assert roger.Consumer.is_alive(pid)
    roger.Partition.stop(pid)
    assert roger.Partition.partitions() == {"running": {}, "waiting": {}}


def test_sigkilled_worker_supervisor_restarts_the_partition_and_the_running_job_comes_back(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    consumer, worker_sup = _consumer_pid(h, pid)
    h.enqueue(TimedJob, pid, "interrupted", 30)
    wait_for(lambda: "interrupted" in h.tags("start"), what="the long job running")

    sigkill(worker_sup)

    # one_for_all: the Consumer restarts too; the job's delivery was never
    # acked, so the broker gives it to the new Consumer, which runs it again.
    wait_for(
        lambda: sum(1 for e in h.events("start") if e["tag"] == "interrupted") == 2,
        timeout=30,
        what="the interrupted job started a second time",
    )
    new_consumer, new_worker_sup = _consumer_pid(h, pid)
    assert new_consumer != consumer and new_worker_sup != worker_sup
    assert not is_alive(worker_sup)


@pytest.mark.timeout(240)
def test_the_node_reconnects_after_a_broker_restart_and_runs_every_job(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    before = [f"b{i}" for i in range(3)]
    for tag in before:
        h.enqueue(TimedJob, pid, tag, 0)
    h.wait_tags("after_run", set(before))

    subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
    try:
        wait_for(
            lambda: pid in roger.Partition.partitions()["waiting"],
            timeout=20,
            what="the partition waiting while the broker is down",
        )
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    subprocess.run(
        ["rabbitmqctl", "await_startup", "--timeout", "60"],
        check=True,
        capture_output=True,
        timeout=90,
    )
    wait_for(
        lambda: pid in roger.Partition.partitions()["running"],
        timeout=40,
        what="the partition running again after the broker came back",
    )
    # the node's publisher reconnects on the next enqueue
    after = [f"a{i}" for i in range(3)]
    for tag in after:
        h.enqueue(TimedJob, pid, tag, 0)
    h.wait_tags("after_run", set(before) | set(after), timeout=30)


def test_sigkilled_partition_supervisor_starts_every_partition_again_and_their_jobs_run(
    h: NodeHarness,
) -> None:
    # With the PartitionSupervisor go every partition's tree; the registry
    # finds its successor and starts there the partitions that were here,
    # the ones started with Partition.start included.
    h.start()
    first = h.start_partition({"default": 2}, name="a")
    second = h.start_partition({"default": 1}, name="b")
    consumer, worker_sup = _consumer_pid(h, first)
    jobs_sup = parent_of(worker_sup)
    containing = parent_of(jobs_sup) if jobs_sup is not None else None
    partition_sup = parent_of(containing) if containing is not None else None
    assert partition_sup is not None and partition_sup != os.getpid()

    sigkill(partition_sup)
    tags = [f"s{i}" for i in range(4)]
    for index, tag in enumerate(tags):
        h.enqueue(TimedJob, (first, second)[index % 2], tag, 0)

    h.wait_tags("after_run", set(tags), timeout=40)
    wait_for(
        lambda: {first, second} <= set(roger.Partition.partitions()["running"]),
        what="both partitions running again",
    )
    new_consumer, _ = _consumer_pid(h, first)
    assert new_consumer != consumer and not is_alive(partition_sup)
