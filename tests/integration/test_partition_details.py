"""Details of a partition on the real broker: start on a running partition
reconfigures it, pause_all, queue types and arguments, broken callbacks."""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors.partition.retry import EXPIRY_FACTOR, EXPIRY_MARGIN_MS
from tests.partition_harness import NodeHarness, counts, drain, wait_for
from tests.roger_test_jobs2 import RetryingFailJob, TimedJob
from tests.roger_test_jobs3 import BuryAtOnceJob, RaisingCallbacks

pytestmark = pytest.mark.timeout(60)



def _queue_info(name: str) -> dict[str, str]:
    import subprocess

    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "--no-table-headers", "name", "type", "arguments"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for line in out.splitlines():
        fields = line.split("\t")
        if fields[0] == name:
            return {"type": fields[1], "arguments": fields[2]}
    raise AssertionError(f"queue {name} not found")


def test_partition_start_on_a_running_partition_reconfigures_it(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1})

    roger.Partition.start(pid, {"default": 3, "extra": 2})

    wait_for(
        lambda: (
            {q: v["max_workers"] for q, v in roger.Consumer.get_queues(pid).items()}
            == {"default": 3, "extra": 2}
        ),
        what="the partition reconfigured",
    )
    h.enqueue(TimedJob, pid, "on-extra", 0, queue="extra")
    h.wait_tags("after_run", {"on-extra"})


def test_pause_all_pauses_every_queue_of_the_partition(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 1, "other": 1})

    roger.Consumer.pause_all(pid)

    assert all(q["paused"] for q in roger.Consumer.get_queues(pid).values())
    h.enqueue(TimedJob, pid, "held", 0, queue="other")
    wait_for(lambda: counts(Queue.make_name(pid, "other")) == (1, 0), what="job held")
    roger.Consumer.resume(pid, "other")
    h.wait_tags("after_run", {"held"})


def test_work_queues_are_quorum_queues_and_side_queues_carry_their_arguments(
    h: NodeHarness,
) -> None:
    h.start(retry_levels=[3])
    pid = h.start_partition({"default": 1})
    h.enqueue(RetryingFailJob, pid, "fails")
    h.wait_events("on_error", 1)
    retry_name = Queue.retry_name(pid, "default", 3)
    wait_for(lambda: counts(retry_name) is not None, what="the retry queue declared")

    assert _queue_info(Queue.make_name(pid, "default"))["type"] == "quorum"
    assert counts(Queue.buried_name(pid, "default")) is None, "declared by the first burial"
    retry = _queue_info(retry_name)["arguments"]
    assert "x-message-ttl" in retry and "3000" in retry
    assert str(3000 * EXPIRY_FACTOR + EXPIRY_MARGIN_MS) in retry, "retry queues expire"
    assert Queue.make_name(pid, "default") in retry, "dead-letters back to the work queue"


def test_a_job_past_the_last_retry_level_is_buried_with_its_payload(h: NodeHarness) -> None:
    h.start(retry_levels=[], max_buried_queue_size=7)
    pid = h.start_partition({"default": 1})
    job = h.enqueue(BuryAtOnceJob, pid, "doomed")

    wait_for(lambda: counts(Queue.buried_name(pid, "default")) == (1, 0), what="the job buried")
    buried = _queue_info(Queue.buried_name(pid, "default"))["arguments"]
    assert "x-max-length" in buried and "7" in buried
    [(body, _headers, message_id)] = drain(Queue.buried_name(pid, "default"))
    assert message_id == job.id
    assert roger.Job.decode(body).id == job.id
    assert h.tags("on_buried") == {"doomed"}
    assert not h.events("on_error"), "burial gets on_buried only, as in Roger"


def test_callbacks_that_raise_are_logged_and_never_stop_the_job_or_the_worker(
    h: NodeHarness,
) -> None:
    h.start(callbacks=RaisingCallbacks)
    pid = h.start_partition({"default": 1})

    h.enqueue(TimedJob, pid, "first", 0)
    h.enqueue(TimedJob, pid, "second", 0)

    h.wait_tags("end", {"first", "second"})
    assert h.tags("cb_before_run") == {"first", "second"}
    assert h.tags("cb_after_run") == {"first", "second"}
    wait_for(lambda: counts(Queue.make_name(pid, "default")) == (0, 1), what="both acked")


def _prefetch_of(queue: str) -> int | None:
    import subprocess

    out = subprocess.run(
        [
            "rabbitmqctl",
            "-q",
            "list_consumers",
            "--no-table-headers",
            "queue_name",
            "prefetch_count",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    counts_ = [
        int(line.split("\t")[1]) for line in out.splitlines() if line.split("\t")[0] == queue
    ]
    return counts_[0] if counts_ else None


def test_prefetch_grows_for_short_jobs_and_returns_to_twice_max_workers_for_long_ones(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 2})
    queue = Queue.make_name(pid, "default")
    assert _prefetch_of(queue) == 4, "starts at 2 x max_workers: one job per worker at a time"

    for i in range(40):
        h.enqueue(TimedJob, pid, f"short{i}", 0)
    h.wait_events("after_run", 40)
    wait_for(lambda: (_prefetch_of(queue) or 0) > 4, what="prefetch raised for short jobs")

    h.enqueue(TimedJob, pid, "long", 0.3)
    h.wait_tags("after_run", {"long"})
    wait_for(lambda: _prefetch_of(queue) == 4, what="prefetch back to 2 x max_workers")
