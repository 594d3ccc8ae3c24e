"""Queue keys are held until the job has run, as in Roger (issue 10, item 1).

Roger frees a job's ``queue_key`` in ``Roger.Partition.Worker.job_done``,
after ``Job.execute``: a duplicate is refused while the job waits *and while
it runs*, and accepted once it finished. One real node and RabbitMQ.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import roger_actors as roger
from roger_actors import Job
from tests.partition_harness import (
    NodeHarness,
    close_connections_named,
    counts,
    holds_for,
    is_alive,
    wait_for,
)
from tests.roger_test_jobs2 import KeyedJob, read_events, record

pytestmark = pytest.mark.timeout(90)

#: The longest a GatedKeyedJob waits for its gate.
GATE_SECONDS = 30.0


class GatedKeyedJob(Job):
    """args: [journal, tag, queue_key, gate] -> "start", waits (at most
    GATE_SECONDS) for the file ``gate``, then "end"; the test decides when it ends."""

    def queue_key(self, args: Any) -> Any:
        return args[2]

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        deadline = time.monotonic() + GATE_SECONDS
        while not Path(args[3]).exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate of {args[1]} never opened")
            time.sleep(0.01)
        record(args[0], "end", tag=args[1])
        return args[1]


class ExecutionGatedJob(GatedKeyedJob):
    """Like GatedKeyedJob, with the execution key args[4] too."""

    def execution_key(self, args: Any) -> Any:
        return args[4]


class CountingGateJob(Job):
    """args: [journal, tag, queue_key, gate] -> "start"; the n-th run of the tag
    waits (at most GATE_SECONDS) for the file ``<gate>.<n>``, then "end". So the
    test decides when each copy of a redelivered job ends."""

    def queue_key(self, args: Any) -> Any:
        return args[2]

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        runs = sum(1 for e in read_events(args[0], "start") if e["tag"] == args[1])
        gate = Path(f"{args[3]}.{runs}")
        deadline = time.monotonic() + GATE_SECONDS
        while not gate.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gate {gate} never opened")
            time.sleep(0.01)
        record(args[0], "end", tag=args[1], run=runs)
        return args[1]


class CrashingKeyedJob(Job):
    """args: [journal, tag, queue_key, gate] -> "start", waits for the file
    ``gate`` (at most GATE_SECONDS), then ends its worker process (exit code 3)."""

    def queue_key(self, args: Any) -> Any:
        return args[2]

    def perform(self, args: Any) -> Any:
        import os

        record(args[0], "start", tag=args[1])
        deadline = time.monotonic() + GATE_SECONDS
        while not Path(args[3]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        os._exit(3)


def _key_free(pid: str, key: str) -> bool:
    return roger.Global.is_queued(pid, key) is False


def test_unique_queue_job_gets_refused_when_queued_twice_also_while_it_runs(
    h: NodeHarness, tmp_path: Path
) -> None:
    """Roger test/roger/job/unique_queue_test.exs, "job gets refused when queued
    twice": enqueued once, a second enqueue is refused; once it ran, enqueue
    again, then four more enqueues are refused (here while the first RUNS);
    once that one finished, the key is free again."""
    h.start()
    pid = h.start_partition({"default": 1})
    first_gate = tmp_path / "first.gate"
    h.enqueue(GatedKeyedJob, pid, "first", "key-job1", str(first_gate))
    with pytest.raises(roger.DuplicateJobError):
        h.enqueue(GatedKeyedJob, pid, "dup-queued", "key-job1", str(first_gate))
    h.wait_tags("start", {"first"})
    for i in range(4):  # running now: still refused (the old rule accepted these)
        with pytest.raises(roger.DuplicateJobError):
            h.enqueue(GatedKeyedJob, pid, f"dup-running{i}", "key-job1", str(first_gate))
    assert "first" not in h.tags("end")
    first_gate.touch()
    h.wait_tags("end", {"first"})
    wait_for(lambda: _key_free(pid, "key-job1"), what="the key freed after the job ran")

    second_gate = tmp_path / "second.gate"
    h.enqueue(GatedKeyedJob, pid, "second", "key-job1", str(second_gate))
    h.wait_tags("start", {"second"})
    for i in range(4):
        with pytest.raises(roger.DuplicateJobError):
            h.enqueue(GatedKeyedJob, pid, f"dup-second{i}", "key-job1", str(second_gate))
    second_gate.touch()
    h.wait_tags("end", {"second"})
    wait_for(lambda: _key_free(pid, "key-job1"), what="the key freed again")
    h.enqueue(KeyedJob, pid, "third", 0, "key-job1", None)
    h.wait_tags("end", {"third"})
    assert not {t for t in h.tags("start") if t.startswith("dup")}


def test_a_queue_key_stays_held_while_its_job_waits_for_its_execution_key(
    h: NodeHarness, tmp_path: Path
) -> None:
    """A job parked in an execution-waiting queue has not run: its queue key
    stays held (Roger's worker parks it without ``job_done``) until it ran."""
    h.start()
    pid = h.start_partition({"default": 2})
    holder_gate, parked_gate = tmp_path / "holder.gate", tmp_path / "parked.gate"
    h.enqueue(ExecutionGatedJob, pid, "holder", "qk-holder", str(holder_gate), "ek-1")
    h.wait_tags("start", {"holder"})
    h.enqueue(ExecutionGatedJob, pid, "parked", "qk-parked", str(parked_gate), "ek-1")
    parked_queue = f"{pid}-execution-waiting-ek-1"
    wait_for(lambda: counts(parked_queue) == (1, 0), what="the second job parked")
    holds_for(lambda: roger.Global.is_queued(pid, "qk-parked") is True, 0.5, "key held")
    with pytest.raises(roger.DuplicateJobError):
        h.enqueue(ExecutionGatedJob, pid, "dup", "qk-parked", str(parked_gate), "ek-1")

    holder_gate.touch()
    h.wait_tags("start", {"parked"})
    assert roger.Global.is_queued(pid, "qk-parked") is True  # running: still held
    parked_gate.touch()
    h.wait_tags("end", {"parked"})
    wait_for(lambda: _key_free(pid, "qk-parked"), what="the parked job's key freed")
    assert _key_free(pid, "qk-holder")
    assert "dup" not in h.tags("start")


def test_a_queue_key_is_held_until_a_worker_crash_or_a_cancel_settles_the_job(
    h: NodeHarness, tmp_path: Path
) -> None:
    """Roger frees the key in ``job_done`` after a worker crash (handle_error)
    and after a cancel; not before."""
    h.start()
    pid = h.start_partition({"default": 2})
    crash_gate = tmp_path / "crash.gate"
    h.enqueue(CrashingKeyedJob, pid, "crasher", "qk-crash", str(crash_gate))
    cancelled = h.enqueue(GatedKeyedJob, pid, "cancelled", "qk-cancel", str(tmp_path / "never"))
    h.wait_tags("start", {"crasher", "cancelled"})
    holds_for(
        lambda: not _key_free(pid, "qk-crash") and not _key_free(pid, "qk-cancel"),
        0.5,
        "both keys held while their jobs run",
    )

    crash_gate.touch()
    h.wait_tags("on_error", {"crasher"})
    wait_for(lambda: _key_free(pid, "qk-crash"), what="the crashed job's key freed")
    assert not _key_free(pid, "qk-cancel")

    [start] = [e for e in h.events("start") if e["tag"] == "cancelled"]
    roger.Global.cancel_job(pid, cancelled.id)
    h.wait_tags("on_cancel", {"cancelled"})
    wait_for(lambda: not is_alive(start["pid"]), what="the cancelled job's worker killed")
    wait_for(lambda: _key_free(pid, "qk-cancel"), what="the cancelled job's key freed")


def test_a_redelivered_copy_holds_the_key_until_its_own_outcome(
    h: NodeHarness, tmp_path: Path
) -> None:
    """The broker connection drops while a keyed job runs: the broker requeues
    it and the Consumer gets it again. The first copy's late outcome (its
    delivery's channel is gone) frees nothing: the key stays held while the
    redelivered copy runs, and is freed at that copy's outcome. The state is
    kept by a Filesystem persister across the Global's reconnect."""
    h.start(
        persister="roger_actors.persisters:Filesystem",
        persister_options={"path": str(tmp_path / "state")},
    )
    pid = h.start_partition({"default": 1})
    gate = tmp_path / "gate"
    h.enqueue(CountingGateJob, pid, "copy", "qk-redelivered", str(gate))
    h.wait_tags("start", {"copy"})
    assert close_connections_named(h.connection_name) >= 1
    # The redelivered copy waits in the Consumer for the busy worker.
    def holding_the_copy() -> bool:
        try:
            return (
                roger.Partition.partitions()["running"].get(pid) is not None
                and roger.Consumer.get_queues(pid)["default"]["message_count"] == 0
            )
        except ConnectionError:
            return False  # the Consumer is connecting again (get_queues says so)

    wait_for(holding_the_copy, what="the Consumer connected again and holding the redelivered copy")
    Path(f"{gate}.1").touch()
    wait_for(lambda: len(h.events("start")) == 2, what="the redelivered copy running")
    holds_for(
        lambda: roger.Global.is_queued(pid, "qk-redelivered") is True,
        1.0,
        "the key held by the redelivered copy",
    )
    Path(f"{gate}.2").touch()
    wait_for(lambda: len(h.events("end")) == 2, what="the redelivered copy done")
    wait_for(lambda: _key_free(pid, "qk-redelivered"), what="the key freed by the copy")
