"""Port of Roger's ``test/roger/job/unique_queue_test.exs``.

Roger's ``{:error, :duplicate}`` is ``roger.DuplicateJobError`` here.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import UniqueQueueTest
from tests.partition_harness import wait_for

pytestmark = pytest.mark.timeout(60)


def test_job_gets_refused_when_queued_twice(app: str, journal: Journal) -> None:
    """test/roger/job/unique_queue_test.exs: "job gets refused when queued twice"."""
    job = roger.Job.create(UniqueQueueTest.MyJob, ["job1"])

    roger.Job.enqueue(job, app)
    with pytest.raises(roger.DuplicateJobError):
        roger.Job.enqueue(job, app)
    journal.wait("msg", 1, msg="job1")

    # Roger sleeps 50 ms for the key to be released after the job: wait for it.
    wait_for(lambda: not roger.Global.is_queued(app, "key-job1"), what="the key released")

    # can receive again after job has been processed
    roger.Job.enqueue(job, app)
    for _ in range(4):
        with pytest.raises(roger.DuplicateJobError):
            roger.Job.enqueue(job, app)
    journal.wait("msg", 2, msg="job1")

    wait_for(lambda: not roger.Global.is_queued(app, "key-job1"), what="the key released")
    roger.Job.enqueue(job, app)
    journal.wait("msg", 3, msg="job1")
