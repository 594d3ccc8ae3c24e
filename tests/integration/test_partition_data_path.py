"""Integration specification of a partition's data path on a real node.

Each test starts its own node (``multiprocTCPBase``, admin port in
22000-22999) against the RabbitMQ on 127.0.0.1:5672 and a partition with a
uuid-suffixed id; teardown stops the node and deletes the partition's queues.
Jobs and callbacks report through a JSON-lines journal (see
``tests.roger_test_jobs2``); every asynchronous expectation is a bounded poll.
"""

from __future__ import annotations

import os
import subprocess
import sys

import cbor2
import pytest

import roger_actors as roger
from roger_actors import Queue
from tests.partition_harness import (
    BROKER,
    NodeHarness,
    counts,
    drain,
    holds_for,
    is_alive,
    live_children,
    publish_raw,
    wait_for,
)
from tests.procs import process_name
from tests.roger_test_jobs2 import (
    DyingJob,
    LimitedJob,
    PlainFailJob,
    RetryingFailJob,
    TimedJob,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def h(h: NodeHarness) -> NodeHarness:
    """The harness of conftest, with its node started."""
    h.start()
    return h


def _message_count(pid: str, queue: str = "default") -> int:
    return int(roger.Consumer.get_queues(pid)[queue]["message_count"])


# ---------------------------------------------------------------- running jobs


def test_enqueued_jobs_run_in_worker_processes_with_before_and_after_run_callbacks(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 3})
    jobs = [h.enqueue(TimedJob, pid, f"j{i}", 0) for i in range(5)]

    after = h.wait_events("after_run", 5)

    ids = {job.id for job in jobs}
    before = h.events("before_run")
    assert {e["id"] for e in before} == ids
    assert {e["id"] for e in after} == ids
    for event in after:
        assert event["partition"] == pid
        assert event["result"] == event["tag"]  # perform's return value
        assert event["state"] == {"from": "before_run", "tag": event["tag"]}
    starts = h.events("start")
    assert {e["tag"] for e in starts} == {f"j{i}" for i in range(5)}
    assert all(e["pid"] != os.getpid() for e in starts), "jobs ran in the test process"
    # the callbacks run in the worker that ran the job
    worker_pids = {e["pid"] for e in starts}
    assert {e["pid"] for e in before} <= worker_pids
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty (all acked)")


def test_concurrency_never_exceeds_max_workers(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 2})
    for i in range(6):
        h.enqueue(TimedJob, pid, f"c{i}", 0.5)

    h.wait_events("end", 6)

    spans = {}
    for event in h.events("start"):
        spans[event["tag"]] = [event["t"], None]
    for event in h.events("end"):
        spans[event["tag"]][1] = event["t"]
    points = sorted(
        [(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()],
        key=lambda p: (p[0], p[1]),  # an end sorts before a start at the same instant
    )
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert peak <= 2, f"{peak} jobs ran at once with max_workers 2"
    assert peak == 2, "the worker pool never grew to max_workers"
    assert len({e["pid"] for e in h.events("start")}) <= 2


def test_a_burst_of_200_jobs_all_run_without_the_partition_stalling(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 2})
    for i in range(200):
        h.enqueue(TimedJob, pid, f"b{i}", 0)

    h.wait_progress("after_run", 200, stall=5.0, timeout=40.0)

    assert h.tags("after_run") == {f"b{i}" for i in range(200)}
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty (all acked)")


def test_invalid_payloads_go_unchanged_to_the_invalid_queue_and_consuming_goes_on(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 2})
    work = Queue.make_name(pid, "default")
    garbage = b"\xff\x00 this is not CBOR \x13\x37"
    unknown = cbor2.dumps(
        {"v": 1, "id": "0badc0de", "module": "not_registered_anywhere.Payload", "args": []}
    )
    publish_raw(work, garbage, headers={"x-test": "garbage"}, message_id="m-garbage")
    publish_raw(work, unknown, headers={"x-test": "unknown"}, message_id="m-unknown")
    h.enqueue(TimedJob, pid, "valid-after", 0)

    h.wait_events("after_run", 1)
    invalid = Queue.invalid_name(pid, "default")
    wait_for(lambda: (counts(invalid) or (0, 0))[0] == 2, what="2 messages in the .invalid queue")
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty")

    moved = {headers["x-test"]: (body, headers, mid) for body, headers, mid in drain(invalid)}
    assert set(moved) == {"garbage", "unknown"}
    body, headers, mid = moved["garbage"]
    assert body == garbage and mid == "m-garbage"
    assert headers["x-roger-invalid"]
    body, headers, mid = moved["unknown"]
    assert body == unknown and mid == "m-unknown"
    reason = headers["x-roger-invalid"]
    reason = reason.decode() if isinstance(reason, bytes) else reason
    assert "Unknown job module" in reason
    assert h.tags("after_run") == {"valid-after"}
    assert h.tags("before_run") == {"valid-after"}


# ---------------------------------------------------------------- failures


def test_retryable_failing_job_goes_through_the_retry_levels_then_is_buried_once(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 2})
    job = h.enqueue(RetryingFailJob, pid, "r")

    h.wait_events("on_buried", 1, timeout=30)

    fails = h.events("fail")
    assert [e["retry_count"] for e in fails] == [0, 1, 2]
    # Exactly one callback per failure, as Roger's handle_error: on_error for
    # the retried attempts, on_buried (and no on_error) for the last one.
    errors = h.events("on_error")
    assert [(e["kind"], e["retry_count"]) for e in errors] == [("error", 0), ("error", 1)]
    assert all(e["id"] == job.id and e["has_stacktrace"] for e in errors)
    # the retry delays are the levels [1, 2] seconds (with some slack for the broker)
    assert fails[1]["t"] - fails[0]["t"] >= 0.9
    assert fails[2]["t"] - fails[1]["t"] >= 1.9
    buried_events = h.events("on_buried")
    assert len(buried_events) == 1
    assert buried_events[0]["kind"] == "error" and buried_events[0]["retry_count"] == 2

    buried = Queue.buried_name(pid, "default")
    wait_for(lambda: (counts(buried) or (0, 0))[0] == 1, what="1 message in the buried queue")
    holds_for(lambda: len(h.events("fail")) == 3, 1.0, "no run after burial")
    assert len(h.events("on_error")) == 2
    [(body, _, _)] = drain(buried)
    payload = roger.Job.decode(body)
    assert payload.id == job.id and payload.retry_count == 2
    assert _message_count(pid) == 0


def test_a_retry_publish_the_broker_refuses_is_tried_again_until_it_lands(
    h: NodeHarness,
) -> None:
    """The retry copy of a failed job is published before its delivery is
    acked. When the broker refuses the retry queue (here another connection
    holds an exclusive queue of that name; in a chaos soak, a retry queue that
    expired between its declare and the publish), the delivery stays unacked
    and the declare and publish are tried again until they land: the job is
    neither dropped nor left unacked for good."""
    pid = h.partition_id("p")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_EXCLUSIVE, BROKER, Queue.retry_name(pid, "default", 1)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert roger.Partition.start(pid, {"default": 1}) == "running"
        h.enqueue(RetryingFailJob, pid, "r")
        h.wait_events("fail", 1)
        # Refused: no retry copy, so no second run.
        holds_for(lambda: len(h.events("fail")) == 1, 2.0, "no run while the queue is refused")
    finally:
        holder.kill()  # its connection closes and the exclusive queue goes with it
        holder.wait(10)
    fails = h.wait_events("fail", 2)
    assert [e["retry_count"] for e in fails[:2]] == [0, 1]


#: Declares an exclusive queue (argv[2]) on its own connection, prints "held"
#: and keeps the connection until killed.
_HOLD_EXCLUSIVE = """
import asyncio, sys, aiormq
async def main():
    connection = await aiormq.connect(sys.argv[1])
    channel = await connection.channel()
    await channel.queue_declare(sys.argv[2], exclusive=True)
    print("held", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def test_non_retryable_failing_job_gets_on_error_and_is_not_retried(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 2})
    job = h.enqueue(PlainFailJob, pid, "n")

    [error] = h.wait_events("on_error", 1)

    assert (error["id"], error["kind"], error["retry_count"]) == (job.id, "error", 0)
    assert "plain job n fails" in error["detail"]
    assert error["state"] == {"from": "before_run", "tag": "n"}
    # retry level 1 is 1 s: watch past it
    holds_for(lambda: len(h.events("fail")) == 1, 2.0, "a single run")
    assert not h.events("on_buried") and not h.events("after_run")
    assert _message_count(pid) == 0
    assert counts(Queue.retry_name(pid, "default", 1)) in (None, (0, 0))
    assert (counts(Queue.buried_name(pid, "default")) or (0, 0))[0] == 0


def test_job_past_max_execution_time_is_killed_and_gets_on_error_timeout(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    job = h.enqueue(LimitedJob, pid, "slow", 5)

    [start] = h.wait_events("start", 1)
    [error] = h.wait_events("on_error", 1, timeout=10)

    assert (error["id"], error["kind"]) == (job.id, "timeout")
    assert error["t"] - start["t"] < 4, "the job was not stopped near its 1 s limit"
    wait_for(lambda: not is_alive(start["pid"]), 5, "the timed-out worker process to be gone")
    assert not h.events("end") and not h.events("after_run")
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty (acked)")
    # the queue keeps working with a fresh worker
    h.enqueue(TimedJob, pid, "next", 0)
    h.wait_tags("after_run", {"next"})
    assert not h.events("end") or h.tags("end") == {"next"}


def test_job_whose_worker_process_dies_gets_on_error_worker_crash(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})
    job = h.enqueue(DyingJob, pid, "boom")

    [dying] = h.wait_events("dying", 1)
    [error] = h.wait_events("on_error", 1, timeout=10)

    assert (error["id"], error["kind"]) == (job.id, "worker_crash")
    assert not is_alive(dying["pid"])
    assert not h.events("after_run")
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty (acked)")
    holds_for(lambda: len(h.events("dying")) == 1, 1.0, "the crashed job is not run again")
    h.enqueue(TimedJob, pid, "next", 0)
    h.wait_tags("after_run", {"next"})


# ---------------------------------------------------------------- pause, reconfigure


def test_paused_queue_keeps_its_messages_and_resume_runs_them(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 2})
    roger.Consumer.pause(pid, "default")
    for i in range(3):
        h.enqueue(TimedJob, pid, f"p{i}", 0)

    wait_for(lambda: _message_count(pid) == 3, what="3 messages waiting")
    assert roger.Consumer.get_queues(pid)["default"]["paused"] is True
    holds_for(
        lambda: _message_count(pid) == 3 and not h.events("before_run"),
        1.5,
        "paused queue keeps its 3 messages",
    )

    roger.Consumer.resume(pid, "default")
    h.wait_events("after_run", 3)
    assert h.tags("after_run") == {"p0", "p1", "p2"}
    assert roger.Consumer.get_queues(pid)["default"]["paused"] is False
    wait_for(lambda: _message_count(pid) == 0, what="work queue empty")


def test_reconfigure_consumes_the_new_queue_and_stops_consuming_the_removed_one(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"old": 1})
    roger.Partition.reconfigure(pid, {"new": 1})

    assert set(roger.Consumer.get_queues(pid)) == {"new"}
    h.enqueue(TimedJob, pid, "on-new", 0, queue="new")
    h.enqueue(TimedJob, pid, "on-old", 0, queue="old")
    h.wait_tags("after_run", {"on-new"})

    old = Queue.make_name(pid, "old")
    holds_for(
        lambda: counts(old) == (1, 0) and "on-old" not in h.tags("start"),
        1.0,
        "the removed queue keeps its message and has no consumer",
    )
    assert roger.Partition.partitions()["running"][pid] == {"new": 1}


def test_reconfigure_to_max_workers_zero_stops_consuming_that_queue(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 2})
    roger.Partition.reconfigure(pid, {"default": 0})

    wait_for(
        lambda: roger.Consumer.get_queues(pid)["default"]["consumer_count"] == 0,
        what="no consumer on the queue",
    )
    h.enqueue(TimedJob, pid, "held", 0)
    holds_for(
        lambda: _message_count(pid) == 1 and not h.events("start"),
        1.0,
        "the message stays queued",
    )
    assert roger.Consumer.get_queues(pid)["default"]["max_workers"] == 0

    roger.Partition.reconfigure(pid, {"default": 2})
    h.wait_tags("after_run", {"held"})


# ---------------------------------------------------------------- queue info


def test_get_queues_returns_max_workers_paused_message_count_and_consumer_count(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 3, "other": 1})

    assert roger.Consumer.get_queues(pid) == {
        "default": {"max_workers": 3, "paused": False, "message_count": 0, "consumer_count": 1},
        "other": {"max_workers": 1, "paused": False, "message_count": 0, "consumer_count": 1},
    }

    roger.Consumer.pause(pid, "other")
    h.enqueue(TimedJob, pid, "waiting", 0, queue="other")
    wait_for(lambda: _message_count(pid, "other") == 1, what="1 message on other")
    assert roger.Consumer.get_queues(pid)["other"] == {
        "max_workers": 1, "paused": True, "message_count": 1, "consumer_count": 0
    }
    assert roger.Consumer.is_alive(pid)


CONSUMER_CRASH = (
    "Fixed bug, kept as a regression test "
    "(roger_actors/partition/consumer.py): Consumer.handle_call raises ValueError "
    "from _check_queue for a queue the partition does not have (Pause, Resume, Purge); "
    "a supervision.Server crashes on it, so the caller gets NoProc('Consumer crashed "
    "handling the call: ValueError(...)') and the ContainingSupervisor (one_for_all) "
    "restarts the Consumer and the WorkerSupervisor: the running job's worker is "
    "killed and the job runs again. Fix: reply_error(from_, ValueError(...)) and "
    "return NOREPLY."
)


def test_pause_of_a_queue_the_partition_lacks_raises_and_leaves_running_jobs_alone(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "running", 1.5)
    [start] = h.wait_events("start", 1)

    with pytest.raises(ValueError, match="not a queue of partition"):
        roger.Consumer.pause(pid, "nosuchqueue")

    h.wait_tags("after_run", {"running"})
    assert len(h.events("start")) == 1, "the running job was killed and ran again"
    assert is_alive(start["ppid"]), "the WorkerSupervisor was restarted"


def test_queue_purge_returns_the_number_of_messages_purged(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    for i in range(5):
        h.enqueue(TimedJob, pid, f"x{i}", 0)
    wait_for(lambda: _message_count(pid) == 5, what="5 messages queued")

    assert roger.Queue.purge(pid, "default") == 5

    assert _message_count(pid) == 0
    assert roger.Queue.purge(pid, "default") == 0
    assert not h.events("start")


REGISTRY_CRASH = (
    "Fixed bug, kept as a regression test "
    "(roger_actors/node/registry.py): Registry.handle_call raises NotRunningError "
    "(_require_running), and a supervision.Server crashes on any exception from "
    "handle_call: the caller gets NoProc('Registry crashed handling the call: ...') "
    "instead of NotRunningError, the registry is restarted with an empty partition "
    "table, and Node.registry still holds the dead registry's address, so every later "
    "facade call times out (CallTimeout after 30 s). Fix: reply_error(from_, "
    "NotRunningError(...)) and return NOREPLY instead of raising."
)


def _registry_answers(timeout: float = 5.0) -> dict[str, dict[str, dict[str, int]]]:
    """Partition.partitions() with a short timeout (the facade waits 30 s)."""
    from roger_actors.node import current
    from roger_actors.node.registry import Partitions

    result: dict[str, dict[str, dict[str, int]]] = current().call(Partitions(), timeout=timeout)
    return result


def test_partition_stop_of_an_unknown_partition_raises_not_running(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})

    with pytest.raises(roger.NotRunningError):
        roger.Partition.stop(h.partition_id("never-started"))

    assert _registry_answers()["running"] == {pid: {"default": 1}}


def test_partition_reconfigure_of_an_unknown_partition_raises_not_running(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})

    with pytest.raises(roger.NotRunningError):
        roger.Partition.reconfigure(h.partition_id("never-started"), {"default": 1})

    assert _registry_answers()["running"] == {pid: {"default": 1}}
    assert h.partition_ids[-1] not in _registry_answers()["waiting"]


def test_consumer_is_alive_of_an_unknown_partition_is_false_and_the_node_keeps_answering(
    h: NodeHarness,
) -> None:
    pid = h.start_partition({"default": 1})

    assert roger.Consumer.is_alive(h.partition_id("never-started")) is False

    assert _registry_answers()["running"] == {pid: {"default": 1}}


# ---------------------------------------------------------------- workers, stopping


def test_worker_pool_shrinks_to_no_process_when_idle(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 3})
    for i in range(6):
        h.enqueue(TimedJob, pid, f"w{i}", 0.3)
    h.wait_events("after_run", 6)

    starts = h.events("start")
    worker_pids = {e["pid"] for e in starts}
    # the WorkerSupervisor's process (light: the fork server, whose other child is the host)
    [forker] = {e["ppid"] for e in starts}
    assert 1 < len(worker_pids) <= 3

    def workers() -> set[int]:
        return {p for p in live_children(forker) if process_name(p) != "PartitionSuperv"}

    assert workers() <= worker_pids

    # idle workers stop after 5 s (checked every second)
    wait_for(
        lambda: not any(is_alive(p) for p in worker_pids) and not workers(),
        timeout=12,
        what="every worker process gone",
        interval=0.25,
    )
    assert is_alive(forker), "the WorkerSupervisor's process (light: the fork server) stays"
    # and the pool grows again on demand
    h.enqueue(TimedJob, pid, "again", 0)
    h.wait_tags("after_run", {"again"})


# ---------------------------------------------------------------- the Consumer's I/O wake-up


LOST_WAKEUP = (
    "Fixed bug, kept as a regression test "
    "(roger_actors/transport/loop.py): LoopThread.drain() clears the 'signalled' "
    "flag BEFORE reading the wake-up bytes. An event posted by the I/O thread between "
    "the clear and the recv sets the flag and writes a byte that this same drain "
    "swallows; the flag then stays set, every later post() skips writing a byte, and "
    "the Consumer is never woken again: deliveries, acks' follow-ups, call replies "
    "(get_queues) and LinkLost pile up in the inbox. Seen as a partition that stops "
    "taking jobs: a burst of 200 jobs stalled in 8 of 8 runs (0 of 8 with the fix), "
    "test_concurrency_never_exceeds_max_workers stalled in 2 of 12 runs. Fix: read the "
    "socket first, then clear the flag, then pop the inbox."
)


def test_loop_thread_wakes_its_actor_for_an_event_posted_while_it_drains() -> None:
    import select

    from roger_actors.transport.loop import LoopThread

    loop = LoopThread("test-wakeup")
    try:
        loop.post("e0")
        real_clear = loop._signalled.clear

        def clear_then_the_io_thread_posts() -> None:
            real_clear()
            loop.post("e1")  # the I/O thread posts at this instant of drain()

        loop._signalled.clear = clear_then_the_io_thread_posts  # type: ignore[method-assign]
        assert loop.drain() == ["e0", "e1"]
        loop._signalled.clear = real_clear  # type: ignore[method-assign]

        loop.post("e2")

        readable, _, _ = select.select([loop.fileno], [], [], 1.0)
        assert readable, "e2 waits in the inbox but the actor's descriptor is not readable"
        assert loop.drain() == ["e2"]
    finally:
        loop.stop()


def test_force_shutdown_stops_taking_jobs_while_the_running_one_finishes(h: NodeHarness) -> None:
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "running", 1.0)
    h.enqueue(TimedJob, pid, "waiting", 0)
    h.wait_tags("start", {"running"})

    roger.Consumer.force_shutdown(pid)

    h.wait_tags("end", {"running"})
    wait_for(lambda: _message_count(pid) == 1, what="the job not started back in the queue")
    holds_for(
        lambda: "waiting" not in h.tags("start"),
        1.0,
        "no job is taken after force_shutdown",
    )
    assert roger.Consumer.is_alive(pid), "the partition itself keeps running"
