"""Port of Roger's ``test/roger/job/worker_timeout_test.exs``.

``max_execution_time`` is in seconds in both (Roger: ``max_execution_time()
:: 1``); Roger's job sleeps the milliseconds it is given.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import WorkerTimeoutTest
from tests.partition_harness import holds_for

pytestmark = pytest.mark.timeout(60)

MyLongJob = WorkerTimeoutTest.MyLongJob


def test_job_should_not_finish_when_over_timeout(app: str, journal: Journal) -> None:
    """test/roger/job/worker_timeout_test.exs: "job should not finish when over timeout"."""
    job = roger.Job.create(MyLongJob, [1100])
    roger.Job.enqueue(job, app)

    # Roger: refute_receive :job_done (100 ms), then assert_receive
    # {:job_error, :timeout} within 1500 ms.
    [error] = journal.wait("on_error", job=job.id, timeout=1.6)
    assert error["kind"] == "timeout"
    # Had it not been stopped, the job would be done 1.1 s after it started.
    holds_for(lambda: not journal.events("job_done"), 0.3, "the job not done")


def test_jobs_still_complete_inside_timeout(app: str, journal: Journal) -> None:
    """test/roger/job/worker_timeout_test.exs: "jobs still complete inside timeout"."""
    job = roger.Job.create(MyLongJob, [50])
    roger.Job.enqueue(job, app)

    journal.wait("job_done", job=job.id)
