"""Port of Roger's ``test/roger/node_info_test.exs``.

Roger's ``setup`` sleeps 1 s before each test (for the partition to settle);
the ``app`` fixture returns once the partition consumes, which is what that
sleep waited for.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors.job import job_class_name
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import NodeInfoTest
from tests.partition_harness import counts, wait_for

pytestmark = pytest.mark.timeout(60)

SlowTestJob = NodeInfoTest.SlowTestJob


def test_get_partition_info(app: str) -> None:
    """test/roger/node_info_test.exs: "get partition info"."""
    info = roger.NodeInfo.partitions()
    assert set(info) == {"waiting", "running"}
    assert isinstance(info["waiting"], dict)
    assert isinstance(info["running"], dict)


def test_get_the_running_jobs(app: str, journal: Journal) -> None:
    """test/roger/node_info_test.exs: "get the running jobs"."""
    roger.Consumer.pause(app, "default")
    wait_for(lambda: roger.Consumer.get_queues(app)["default"]["paused"], what="paused")

    job = roger.Job.create(SlowTestJob, 1)
    roger.Job.enqueue(job, app)
    wait_for(lambda: counts(roger.Queue.make_name(app, "default")) == (1, 0), what="queued")

    roger.Consumer.resume(app, "default")
    # Roger sleeps 50 ms for the job to start: wait for it.
    journal.wait("start", job=job.id)

    info = roger.NodeInfo.running_jobs()
    assert isinstance(info, dict)
    assert isinstance(info[app], list)
    jobs = info[app]

    assert len(jobs) == 1
    [running] = jobs

    assert running.started_at > 0
    assert roger.now() - running.started_at > 0
    assert type(running) is SlowTestJob and running.module == job_class_name(SlowTestJob)
    assert running.args == 1

    journal.wait("done", job=job.id)
    # Roger sleeps 10 ms for the outcome to reach the Consumer: wait for it.
    wait_for(lambda: roger.NodeInfo.running_jobs()[app] == [], what="no job running")

    assert roger.NodeInfo.running_jobs()[app] == []
    assert roger.NodeInfo.running_jobs(app) == []


def test_queue_info(app: str, journal: Journal) -> None:
    """test/roger/node_info_test.exs: "queue info"."""
    roger.Consumer.pause(app, "default")

    job = roger.Job.create(SlowTestJob, 4)
    roger.Job.enqueue(job, app)
    # Roger sleeps 100 ms: wait for the job to be in the queue.
    wait_for(lambda: counts(roger.Queue.make_name(app, "default")) == (1, 0), what="queued")

    info = roger.NodeInfo.running_partitions()

    partition = info[app]
    # we're paused
    assert partition["default"]["consumer_count"] == 0
    assert partition["default"]["max_workers"] == 10
    assert partition["default"]["message_count"] > 0
    assert partition["default"]["paused"] is True

    roger.Consumer.resume(app, "default")
    journal.wait("done", args=4)
