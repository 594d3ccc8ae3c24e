"""Roger's Global on one real node (multiprocTCPBase + RabbitMQ): the state
operations, cancellation of queued and running jobs, queue keys, execution
keys, cluster-wide pause, persistence and a SIGKILLed Global.

The two-node behaviour (failover, cancel across nodes) is in
``test_cluster_global``.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import cbor2
import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from tests.partition_harness import (
    BROKER,
    NodeHarness,
    counts,
    holds_for,
    is_alive,
    publish_raw,
    wait_for,
)
from tests.procs import sigkill
from tests.roger_test_jobs2 import KeyedJob, SpawningJob, TimedJob

pytestmark = pytest.mark.timeout(90)



def test_global_operations_behave_as_rogers(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    g = roger.Global

    g.cancel_job(pid, "job-1")
    assert g.is_cancelled(pid, "job-1") is True
    assert g.is_cancelled(pid, "job-1", remove=True) is True
    assert g.is_cancelled(pid, "job-1") is False

    assert g.is_queued(pid, "qk", add=True) is False
    assert g.is_queued(pid, "qk") is True
    g.remove_queued(pid, "qk")
    assert g.is_queued(pid, "qk") is False

    assert g.is_executing(pid, "ek", add=True) is False
    assert g.is_executing(pid, "ek") is True
    g.remove_executed(pid, "ek")
    assert g.is_executing(pid, "ek") is False

    g.queue_pause(pid, "default")
    assert g.queue_get_paused(pid) == {"default"}
    g.queue_resume(pid, "default")
    assert g.queue_get_paused(pid) == set()


def test_a_partition_started_nowhere_raises_not_started_promptly(h: NodeHarness) -> None:
    h.start()
    began = time.monotonic()
    with pytest.raises(roger.NotStartedError, match="not started anywhere"):
        roger.Global.is_queued(h.partition_id("nowhere"), "k")
    assert time.monotonic() - began < 3.0


def test_bad_requests_get_an_error_and_never_crash_global(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    before = h.global_status(pid)["pid"]

    with pytest.raises(ValueError, match="queue_key must be a non-empty string"):
        roger.Global.is_queued(pid, "", add=True)
    for garbage in (b"\xff\xfe", b"\xa1\x61v\x02", b"not cbor at all"):
        publish_raw(f"roger-global.{pid}", garbage)

    roger.Global.cancel_job(pid, "still-serving")
    assert roger.Global.is_cancelled(pid, "still-serving") is True
    status = h.global_status(pid)
    assert status["pid"] == before and status["served"] >= 6


def test_a_cancelled_queued_job_is_not_run_and_gets_on_cancel_once(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    job = h.enqueue(TimedJob, pid, "doomed", 0)
    wait_for(lambda: counts(Queue.make_name(pid, "default")) == (1, 0), what="the job queued")

    roger.Global.cancel_job(pid, job.id)
    roger.Consumer.resume(pid, "default")
    h.enqueue(TimedJob, pid, "after", 0)

    h.wait_tags("end", {"after"})
    h.wait_tags("on_cancel", {"doomed"})
    holds_for(lambda: len(h.events("on_cancel")) == 1, 1.0, "on_cancel ran once")
    assert "doomed" not in h.tags("start") | h.tags("before_run")
    assert roger.Global.is_cancelled(pid, job.id) is False  # the mark was cleared
    assert counts(Queue.make_name(pid, "default")) == (0, 1)


def test_a_running_job_is_killed_and_gets_on_cancel_once(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    job = h.enqueue(TimedJob, pid, "long", 60)
    [start] = h.wait_events("start", 1)

    roger.Global.cancel_job(pid, job.id)

    h.wait_tags("on_cancel", {"long"})
    wait_for(lambda: not is_alive(start["pid"]), what="the worker killed")
    h.enqueue(TimedJob, pid, "next", 0)
    h.wait_tags("end", {"next"})
    assert "long" not in h.tags("end") and "long" not in h.tags("on_error")
    assert len(h.events("on_cancel")) == 1
    assert counts(Queue.make_name(pid, "default")) == (0, 1)  # acked, not requeued


def test_a_job_waiting_in_a_workers_batch_is_cancelled_without_running(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    # Teach the queue that jobs are quick, so the next ones travel in batches.
    for i in range(40):
        h.enqueue(TimedJob, pid, f"warm{i}", 0)
    h.wait_events("end", 40)
    roger.Consumer.pause(pid, "default")
    # On resume "first" goes alone to the idle worker; the others arrive while
    # it runs and go together as the worker's next batch.
    h.enqueue(TimedJob, pid, "first", 0.02)
    blocker = h.enqueue(TimedJob, pid, "blocker", 2)
    victim = h.enqueue(TimedJob, pid, "victim", 0)
    tail = h.enqueue(TimedJob, pid, "tail", 0)
    roger.Consumer.resume(pid, "default")
    wait_for(lambda: "blocker" in h.tags("start"), what="the blocker running")

    roger.Global.cancel_job(pid, victim.id)

    h.wait_tags("end", {"blocker", "tail"})
    h.wait_tags("on_cancel", {"victim"})
    assert "victim" not in h.tags("start")
    assert blocker.id != tail.id


def test_a_queue_key_refuses_a_duplicate_until_the_job_has_run(
    h: NodeHarness,
) -> None:
    """The key is freed once the job's outcome is settled (Roger's ``job_done``),
    which follows ``after_run``; the running window is in test_fidelity_keys."""
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    h.enqueue(KeyedJob, pid, "first", 0, "report-42", None)

    with pytest.raises(roger.DuplicateJobError) as refused:
        h.enqueue(KeyedJob, pid, "dup", 0, "report-42", None)
    assert refused.value.queue_key == "report-42"
    h.enqueue(KeyedJob, pid, "other", 0, "report-43", None)

    roger.Consumer.resume(pid, "default")
    h.wait_tags("after_run", {"first"})
    wait_for(lambda: not roger.Global.is_queued(pid, "report-42"), what="the key freed")
    h.enqueue(KeyedJob, pid, "again", 0, "report-42", None)  # once it ran: accepted
    h.wait_tags("end", {"again", "other"})
    assert "dup" not in h.tags("start")


def test_a_queue_key_is_freed_for_a_job_that_fails(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    job = h.enqueue(KeyedJob, pid, "bad", "not-a-number", "k-fail", None)
    h.wait_tags("on_error", {"bad"})
    wait_for(lambda: not roger.Global.is_queued(pid, "k-fail"), what="the key freed")
    assert job.queue_key == "k-fail"


def test_a_queue_key_is_freed_for_a_job_cancelled_while_queued(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    job = h.enqueue(KeyedJob, pid, "dropped", 0, "k-cancel", None)
    roger.Global.cancel_job(pid, job.id)
    roger.Consumer.resume(pid, "default")
    h.wait_tags("on_cancel", {"dropped"})
    wait_for(lambda: not roger.Global.is_queued(pid, "k-cancel"), what="the key freed")
    h.enqueue(KeyedJob, pid, "again", 0, "k-cancel", None)
    h.wait_tags("end", {"again"})


def test_a_queue_key_is_freed_for_a_payload_set_aside_as_invalid(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    assert roger.Global.is_queued(pid, "k-invalid", add=True) is False
    payload = cbor2.dumps(
        {"v": 1, "id": "x1", "module": "nowhere.Unknown", "args": [], "queue_key": "k-invalid"}
    )
    publish_raw(Queue.make_name(pid, "default"), payload)
    wait_for(lambda: not roger.Global.is_queued(pid, "k-invalid"), what="the key freed")
    assert counts(Queue.invalid_name(pid, "default")) == (1, 0)


def test_jobs_with_one_execution_key_never_overlap_and_run_in_order(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 4})
    tags = [f"serial{i}" for i in range(4)]
    for tag in tags:
        h.enqueue(KeyedJob, pid, tag, 0.3, None, "account-7")
    h.enqueue(KeyedJob, pid, "free", 0.3, None, None)

    h.wait_tags("end", {*tags, "free"})
    starts = {e["tag"]: e["t"] for e in h.events("start")}
    ends = {e["tag"]: e["t"] for e in h.events("end")}
    ordered = sorted(tags, key=lambda t: starts[t])
    assert ordered == tags, "waiting jobs ran in the order they were enqueued"
    for earlier, later in itertools.pairwise(ordered):
        assert ends[earlier] <= starts[later], f"{earlier} and {later} overlapped"
    assert starts["free"] < ends["serial0"], "a job without the key did not wait"
    # The key is released after the last job's outcome reaches its Consumer.
    wait_for(lambda: not roger.Global.is_executing(pid, "account-7"), what="the key released")


def test_a_cluster_pause_survives_a_consumer_restart_and_a_reconfigure(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    roger.Global.queue_pause(pid, "default")
    wait_for(lambda: roger.Consumer.get_queues(pid)["default"]["paused"], what="paused")
    h.enqueue(TimedJob, pid, "held", 0)

    roger.Partition.reconfigure(pid, {"default": 1, "extra": 1})
    consumer = roger_node.current().consumer_call(pid, Status())["pid"]
    sigkill(consumer)

    def paused_flags() -> dict[str, bool]:
        try:
            if roger_node.current().consumer_call(pid, Status(), 2)["pid"] == consumer:
                return {}
            return {q: v["paused"] for q, v in roger.Consumer.get_queues(pid).items()}
        except Exception:
            return {}

    # 60 s: a SIGKILLed Consumer has been seen to take over 20 s to come
    # back now and then (under investigation; see the session notes).
    wait_for(
        lambda: paused_flags() == {"default": True, "extra": False},
        60.0,
        what="a new Consumer with default paused (from Global) and extra not",
    )
    holds_for(lambda: "held" not in h.tags("start"), 1.0, "the paused queue holds its job")

    roger.Global.queue_resume(pid, "default")
    h.wait_tags("end", {"held"})
    assert roger.Global.queue_get_paused(pid) == set()


def test_the_state_is_stored_on_clean_stop_and_loaded_on_start(
    h: NodeHarness, tmp_path: Path
) -> None:
    store = tmp_path / "state"
    h.start(
        persister="roger_actors.persisters:Filesystem",
        persister_options={"path": str(store)},
    )
    pid = h.start_partition({"default": 1})
    roger.Global.cancel_job(pid, "kept")
    roger.Global.queue_pause(pid, "default")
    roger.Partition.stop(pid)

    roger.Partition.start(pid, {"default": 1})
    assert roger.Global.is_cancelled(pid, "kept") is True
    assert roger.Global.queue_get_paused(pid) == {"default"}


def test_an_answered_change_survives_a_sigkill_right_after_and_calls_go_on(
    h: NodeHarness,
) -> None:
    h.start(persister="roger_actors.persisters:RabbitMQ", persister_options={"url": BROKER})
    pid = h.start_partition({"default": 1})
    roger.Global.cancel_job(pid, "before-kill")
    victim = h.global_status(pid)["pid"]

    sigkill(victim)
    # Asked during the gap: answered by the restarted Global, from the snapshot.
    assert roger.Global.is_cancelled(pid, "before-kill") is True
    assert h.global_status(pid)["pid"] != victim


def test_a_running_job_can_ask_global_and_enqueue_jobs(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    h.enqueue(SpawningJob, pid, "parent", pid)
    h.wait_tags("end", {"parent-child"})
    [spawning] = h.events("spawning")
    assert spawning["cancelled"] is False
