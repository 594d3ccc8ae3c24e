"""Port of Roger's ``test/roger/queue_test.exs``."""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.jobs import QueueTest
from tests.partition_harness import counts, wait_for

pytestmark = pytest.mark.timeout(60)


def test_purge_queued_jobs(app: str) -> None:
    """test/roger/queue_test.exs: "purge queued jobs"."""
    roger.Consumer.pause(app, "default")
    roger.Job.enqueue(roger.Job.create(QueueTest.TestJob, 2), app)
    roger.Job.enqueue(roger.Job.create(QueueTest.TestJob, 3), app)

    # Roger sleeps 100 ms: wait for both to be in the queue.
    wait_for(lambda: counts(roger.Queue.make_name(app, "default")) == (2, 0), what="2 queued")

    assert roger.NodeInfo.running_partitions()[app]["default"]["message_count"] == 2

    jobs = roger.Info.queued_jobs(app, "default")
    assert len(jobs) == 2

    # Roger: {:ok, %{message_count: 2}}; the port returns the count.
    assert roger.Queue.purge(app, "default") == 2

    assert roger.NodeInfo.running_partitions()[app]["default"]["message_count"] == 0

    roger.Consumer.resume(app, "default")
