"""``started_at`` and ``queued_at`` default to 0, as in Roger's ``%Roger.Job{}`` (issue 10, item 3).

Roger's test/roger/info_test.exs reads a queued job with ``Info.queued_jobs``
and asserts ``queued_at > 0`` and ``started_at == 0``. One real node and
RabbitMQ.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors import Queue
from roger_actors.cli import _job_dict
from tests.partition_harness import NodeHarness, counts, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def test_a_queued_job_has_started_at_zero_and_a_running_one_its_start(h: NodeHarness) -> None:
    h.start()
    pid = h.start_partition({"default": 0, "run": 1})  # default: nobody consumes it
    job = h.enqueue(TimedJob, pid, "queued", 0)
    assert job.started_at == 0
    queue = Queue.make_name(pid, "default")
    wait_for(lambda: (counts(queue) or (0, 0))[0] == 1, what="the job queued")

    [queued] = roger.Info.queued_jobs(pid, "default")
    assert isinstance(queued, TimedJob) and queued.id == job.id
    assert queued.queued_at > 0
    assert queued.started_at == 0
    assert _job_dict(queued)["started_at"] == 0  # what the CLI shows

    h.enqueue(TimedJob, pid, "running", 5, queue="run")
    h.wait_tags("start", {"running"})
    [running] = roger.NodeInfo.running_jobs(pid)
    assert running.started_at > 0
