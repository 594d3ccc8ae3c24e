"""Port of Roger's ``test/roger/job/unique_execution_test.exs``."""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import UniqueExecutionTest

pytestmark = pytest.mark.timeout(60)


def test_jobs_with_execution_key_get_executed_sequentially(app: str, journal: Journal) -> None:
    """test/roger/job/unique_execution_test.exs: "jobs with execution key get
    executed sequentially"."""
    # Roger sleeps 1 ms between the enqueues to order them; an enqueue here
    # returns once the broker has the job, so they are in order.
    for msg in (1, 2, 3):
        roger.Job.enqueue(roger.Job.create(UniqueExecutionTest.MyJob, msg), app)

    journal.wait("stop", 3)
    # Roger's receive_list: these six messages, in this order (any other
    # message in between would make it time out).
    seen = [(e["event"], e["msg"]) for e in journal.events() if e["event"] in ("start", "stop")]
    assert seen == [
        ("start", 1), ("stop", 1), ("start", 2), ("stop", 2), ("start", 3), ("stop", 3)
    ]
