"""Port of Roger's ``test/roger/job/enqueue_test.exs``."""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import EnqueueTest

pytestmark = pytest.mark.timeout(60)

MyCalculation = EnqueueTest.MyCalculation


def test_job_enqueue(app: str, journal: Journal) -> None:
    """test/roger/job/enqueue_test.exs: "job enqueue"."""
    job = roger.Job.create(MyCalculation, [2])
    assert roger.Job.enqueue(job, app) is None

    [event] = journal.wait("result", job=job.id)
    assert event["value"] == 4


def test_non_unique_jobs_can_be_enqueued_multiple_times(app: str, journal: Journal) -> None:
    """test/roger/job/enqueue_test.exs: "non-unique jobs can be enqueued multiple times"."""
    job = roger.Job.create(MyCalculation, [2])
    roger.Job.enqueue(job, app)
    roger.Job.enqueue(job, app)

    events = journal.wait("result", 2, job=job.id)
    assert [e["value"] for e in events] == [4, 4]
