"""A queue's pause bit in the Consumer, as in Roger (issue 10, item 2).

Roger's Consumer keeps one paused set, by queue type, that outlives its
queue list: ``Consumer.pause`` and the cluster-wide ``Global.queue_pause``
(a System call to every Consumer's pause) set the same bit, a reconfigure
keeps it, and a Consumer that starts takes Global's paused set. One real
node and RabbitMQ.
"""

from __future__ import annotations

import threading

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from tests.partition_harness import NodeHarness, counts, holds_for, wait_for
from tests.procs import sigkill
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def _paused(pid: str) -> dict[str, bool]:
    return {q: v["paused"] for q, v in roger.Consumer.get_queues(pid).items()}


def _consumer_pid(pid: str, timeout: float = 10.0) -> int:
    value: int = roger_node.current().consumer_call(pid, Status(), timeout)["pid"]
    return value


def test_pause_resume_state_should_survive_reconfigure(h: NodeHarness) -> None:
    """Roger test/roger/consumer_test.exs, "pause/resume state should survive
    reconfigure": pause, enqueue, reconfigure to no queue, reconfigure back:
    the queue is still paused and its job does not run until resumed."""
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    h.enqueue(TimedJob, pid, "job_2", 0)
    wait_for(lambda: counts(Queue.make_name(pid, "default")) == (1, 0), what="job queued")

    roger.Partition.reconfigure(pid, {})
    assert roger.Consumer.get_queues(pid) == {}
    roger.Partition.reconfigure(pid, {"default": 10})

    assert _paused(pid) == {"default": True}
    holds_for(lambda: "job_2" not in h.tags("start"), 1.0, "the paused queue holds its job")
    roger.Consumer.resume(pid, "default")
    h.wait_tags("end", {"job_2"})


def test_a_local_pause_survives_a_changed_reconfigure_and_is_lost_on_restart(
    h: NodeHarness,
) -> None:
    """The bit also survives a reconfigure that changes the queue's
    ``max_workers`` (through 0 and back); a Consumer that restarts keeps only
    the cluster-wide paused set (Global's), as Roger's Consumer does."""
    h.start()
    pid = h.start_partition({"default": 1, "other": 1})
    roger.Consumer.pause(pid, "default")
    roger.Partition.reconfigure(pid, {"default": 0, "other": 1})
    roger.Partition.reconfigure(pid, {"default": 3, "other": 1})
    assert _paused(pid) == {"default": True, "other": False}
    h.enqueue(TimedJob, pid, "held", 0)
    holds_for(lambda: "held" not in h.tags("start"), 1.0, "the paused queue holds its job")

    consumer = _consumer_pid(pid)
    sigkill(consumer)

    seen: list[object] = []

    def restarted() -> bool:
        try:
            now = _consumer_pid(pid, 2)
            paused = _paused(pid)
        except Exception as exc:  # between two Consumers
            seen.append(repr(exc))
            return False
        seen.append((now, paused))
        return now != consumer and paused == {"default": False, "other": False}

    try:
        # The one_for_all restart waits for the workers' shutdown (up to 5 s
        # each, then SIGKILL): give it more than the default 20 s.
        wait_for(restarted, timeout=45, what="a new Consumer, the local pause gone")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {seen[-3:]}") from None
    h.wait_tags("end", {"held"})


def test_a_cluster_pause_and_a_local_one_share_the_queues_bit(h: NodeHarness) -> None:
    """Global.queue_resume resumes a queue paused locally (one bit, as in
    Roger); a cluster pause survives a reconfigure that removes the queue and
    adds it back, and reaches a queue that is added later."""
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    roger.Global.queue_resume(pid, "default")
    wait_for(lambda: _paused(pid) == {"default": False}, what="resumed by Global")

    roger.Global.queue_pause(pid, "default")
    roger.Global.queue_pause(pid, "later")
    wait_for(lambda: _paused(pid) == {"default": True}, what="paused by Global")
    roger.Partition.reconfigure(pid, {})
    roger.Partition.reconfigure(pid, {"default": 1, "later": 1})
    assert _paused(pid) == {"default": True, "later": True}
    roger.Consumer.resume(pid, "later")
    assert _paused(pid) == {"default": True, "later": False}


def test_a_pause_that_races_a_resume_never_leaves_a_paused_queue_consumed(
    h: NodeHarness,
) -> None:
    """A Pause handled while a Resume's ``basic.consume`` (or the resume that
    follows Global's snapshot, right after the partition runs) is still on
    its way to the broker: the broker-side consumer must end up matching the
    pause bit. Before the Consumer ran its consumer changes one at a time,
    the pause found no consumer to cancel, and the paused queue kept being
    consumed (each delivery requeued, again and again)."""
    h.start()
    pid = h.start_partition({"default": 1})
    mismatches = []
    for attempt in range(20):
        roger.Consumer.pause(pid, "default")
        resumer = threading.Thread(target=roger.Consumer.resume, args=(pid, "default"))
        resumer.start()
        roger.Consumer.pause(pid, "default")
        resumer.join()
        queue = roger.Consumer.get_queues(pid)["default"]
        if queue["consumer_count"] != (0 if queue["paused"] else 1):
            mismatches.append((attempt, queue["paused"], queue["consumer_count"]))
    assert mismatches == []
