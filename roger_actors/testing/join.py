"""``join(partition_id, queue)``: wait until a queue is drained; re-raise the first job error."""

from __future__ import annotations

import time
from typing import Any

from roger_actors.job import Job
from roger_actors.queue import normalise_queue_type, validate_partition_id

from .ledger import Ledger

__all__ = ["JoinTimeout", "join"]

#: Seconds between two looks at the cluster.
POLL_SECONDS = 0.05
#: Looks in a row that must find the queue drained before join returns (a job
#: moves from the queue to a worker between two looks without being seen in
#: either place for a moment).
DRAINED_LOOKS = 3


class JoinTimeout(TimeoutError):
    """The queue was not drained in time; the message says what was left."""


def _drained(partition_id: str, queue: str, queues: dict[str, str | None]) -> str | None:
    """None when no node holds a job of ``queue`` (queued in it or running),
    else what is left, from ``roger.Info``. ``queues``: the queue each job id
    was enqueued into, where the ledger knows it (a job's queue type names
    its queue otherwise; an enqueue may override it)."""
    from roger_actors.node.info import Info

    running_partitions = Info.running_partitions()
    nodes = {name: value[partition_id] for name, value in running_partitions.items()
             if isinstance(value, dict) and partition_id in value}
    failed = [name for name, value in running_partitions.items() if not isinstance(value, dict)]
    if failed:
        return f"nodes {failed} did not answer Info.running_partitions"
    if not nodes:
        return f"partition {partition_id!r} runs on no node"
    queued = sum(int(stats.get(queue, {}).get("message_count", 0)) for stats in nodes.values())
    if queued:
        return f"{queued} job(s) queued in {queue!r}"
    running: list[Any] = []
    for value in Info.running_jobs(partition_id).values():
        if not isinstance(value, list):
            return f"a node failed Info.running_jobs: {value!r}"
        for job in value:
            if not isinstance(job, Job):
                running.append(job.get("id") if isinstance(job, dict) else job)
            elif (queues.get(job.id) or Job.queue_type(job)) == queue:
                running.append(job.id)
    if running:
        return f"running: {running}"
    return None


def join(
    partition_id: str,
    queue: str = "default",
    timeout: float = 30.0,
    *,
    fail_fast: bool = True,
    ledger: Ledger | None = None,
) -> None:
    """Wait until ``queue`` of ``partition_id`` is drained; re-raise the first job error.

    Drained: every job enqueued into that queue that the ledger knows of (see
    :mod:`roger_actors.testing.ledger`: enqueued by this process or by a job)
    has a final outcome (done, error, buried, cancelled), and ``roger.Info``
    shows, on every node running the partition, no job queued in it and no
    job of that queue running (the queue a job was enqueued into, as the
    ledger says, else its job class's queue type); both hold for :data:`DRAINED_LOOKS` looks
    in a row. A job waiting in a retry queue or for an execution key counts
    as not drained when the ledger knows of it (Info does not show those).

    ``fail_fast`` (the default): as soon as the ledger holds a job failure of
    the partition (a job that is not retryable failed, or one was buried;
    retried attempts are not errors) that no ``join`` through this ledger
    raised before, it is raised: the job's own exception when it could be
    pickled in the worker (else :class:`~roger_actors.testing.ledger.JobError`,
    as for a timeout or a worker that died), with the worker's traceback as
    its ``__cause__``. Errors of any queue of the partition count.

    ``ledger``: default the one :data:`~roger_actors.testing.ledger.LEDGER_ENV`
    names. Without one, only ``roger.Info`` is looked at and ``fail_fast``
    cannot see errors: then it raises RuntimeError, unless ``fail_fast=False``.

    Raises :class:`JoinTimeout` (what was left, in the message) after
    ``timeout`` seconds; NotStartedError when no node or producer runs in this
    process; TypeError/ValueError for bad arguments. A queue that is paused
    does not drain: join times out.
    """
    pid = validate_partition_id(partition_id)
    queue_type = normalise_queue_type(queue, argument="queue")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if ledger is None:
        ledger = Ledger.from_environment()
    if ledger is None and fail_fast:
        raise RuntimeError(
            "join(fail_fast=True) needs a ledger to see job errors: configure "
            "roger_actors.testing.RecordingCallbacks as the node's callbacks and create a "
            "Ledger before the node starts (the pytest fixtures do), or pass fail_fast=False"
        )
    deadline = time.monotonic() + timeout
    looks = 0
    while True:
        records = ledger.records() if ledger is not None else []
        if fail_fast and ledger is not None:
            failure = ledger.take_failure(pid, records)
            if failure is not None:
                raise failure.exception_to_raise()
        pending = ledger.pending(pid, queue_type, records) if ledger is not None else []
        if pending:
            left: str | None = f"jobs without an outcome yet: {pending}"
        else:
            queues = {r.job_id: r.queue for r in records if r.event == "enqueued"}
            left = _drained(pid, queue_type, queues)
        looks = looks + 1 if left is None else 0
        if looks >= DRAINED_LOOKS:
            return
        if time.monotonic() > deadline:
            raise JoinTimeout(
                f"queue {queue_type!r} of partition {pid!r} not drained after {timeout} s: {left}"
            )
        time.sleep(POLL_SECONDS)
