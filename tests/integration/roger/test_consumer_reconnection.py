"""Port of Roger's ``test/roger/consumer/reconnection_test.exs``.

Roger kills its node's one AMQP connection process 10 ms after the enqueue,
while the job (100 ms) runs. The port's node has a connection per actor
(all named after the node): the broker closes every one of them, while the
job runs (it waits for the test's go, see ``ReconnectionTest.MyJob``). The
commented-out test "reconnect before enqueue job" is not ported.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal, RogerHarness
from tests.integration.roger.jobs import ReconnectionTest
from tests.partition_harness import close_connections_named

pytestmark = pytest.mark.timeout(60)


def test_reconnect_after_enqueue_job(app: str, node: RogerHarness, journal: Journal) -> None:
    """test/roger/consumer/reconnection_test.exs: "reconnect after enqueue job"."""
    job = roger.Job.create(ReconnectionTest.MyJob, 1)
    roger.Job.enqueue(job, app)

    journal.wait("running", job=job.id)

    assert close_connections_named(node.connection_name, "roger reconnection test") > 0
    node.release(job)

    journal.wait("reconnect_job_done", job=job.id, timeout=10.0)
