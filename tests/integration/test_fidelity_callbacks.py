"""Exactly one callback ends a failure, as in Roger (issue 10, item 4).

Roger's ``Worker.handle_error`` calls ``on_buried`` when the retry buried
the job, else ``on_error``: never both. Here for a worker that dies under a
retryable job at its last level (the callback runs in the Consumer). The
failing-``perform`` case is in ``test_partition_data_path`` and
``test_partition_details``. One real node and RabbitMQ.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from roger_actors import Job, Queue
from tests.partition_harness import NodeHarness, counts, holds_for, wait_for
from tests.roger_test_jobs2 import record

pytestmark = pytest.mark.timeout(90)


class RetryableDyingJob(Job):
    """args: [journal, tag] -> records "dying" then ends its worker process. Retryable."""

    retryable = True

    def perform(self, args: Any) -> Any:
        record(args[0], "dying", tag=args[1], retry_count=self.retry_count)
        os._exit(3)


def test_a_worker_crash_that_buries_the_job_gets_on_buried_only(h: NodeHarness) -> None:
    h.start(retry_levels=[1])
    pid = h.start_partition({"default": 1})
    job = h.enqueue(RetryableDyingJob, pid, "crash")

    [buried] = h.wait_events("on_buried", 1, timeout=30)
    assert (buried["id"], buried["kind"], buried["retry_count"]) == (job.id, "worker_crash", 1)
    [error] = h.events("on_error")  # the first crash was retried: on_error
    assert (error["kind"], error["retry_count"]) == ("worker_crash", 0)
    wait_for(lambda: counts(Queue.buried_name(pid, "default")) == (1, 0), what="the job buried")
    holds_for(lambda: len(h.events("on_error")) == 1, 1.0, "no on_error for the burial")
