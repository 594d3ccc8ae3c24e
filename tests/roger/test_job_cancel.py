"""Port of Roger's ``test/roger/job/cancel_test.exs`` (AppCase with
``CancelCallbacks``: ``on_cancel`` reports the job id; here the recording
callbacks of every module, read back from the journal)."""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.roger.conftest import Journal
from tests.roger.jobs import CancelTest

pytestmark = pytest.mark.timeout(60)


def test_statemanager_cancel_logic(app: str) -> None:
    """test/roger/job/cancel_test.exs: "statemanager cancel logic"."""
    job = roger.Job.create(CancelTest.MyJob, [2])

    assert roger.Global.cancel_job(app, job.id) is None

    # When calling is_cancelled, state is not touched
    assert roger.Global.is_cancelled(app, job.id) is True
    assert roger.Global.is_cancelled(app, job.id) is True

    # When called with remove, the id is removed from the cancel set
    assert roger.Global.is_cancelled(app, job.id, remove=True) is True
    assert roger.Global.is_cancelled(app, job.id, remove=True) is False


def test_it_can_cancel_a_job_thats_in_the_queue(app: str, journal: Journal) -> None:
    """test/roger/job/cancel_test.exs: "it can cancel a job that's in the queue"."""
    job = roger.Job.create(CancelTest.MyJob, [2])
    roger.Job.enqueue(job, app)
    assert roger.Global.cancel_job(app, job.id) is None

    [cancelled] = journal.wait("on_cancel", timeout=1.0)  # Roger: within 1000 ms
    assert cancelled["job"] == job.id


def test_it_can_cancel_a_job_thats_running(app: str, journal: Journal) -> None:
    """test/roger/job/cancel_test.exs: "it can cancel a job that's running"."""
    # Create and enqueue a job
    job = roger.Job.create(CancelTest.MyCancellableJob, [2])
    roger.Job.enqueue(job, app)
    # Wait until it says it's running
    journal.wait("job_running", job=job.id, timeout=1.0)

    # Now cancel it
    assert roger.Global.cancel_job(app, job.id) is None

    # Wait until the on_cancel callback fires
    [cancelled] = journal.wait("on_cancel", timeout=1.0)
    assert cancelled["job"] == job.id
