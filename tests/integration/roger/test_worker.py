"""Port of Roger's ``test/roger/worker_test.exs``.

Its ``doctest Roger.Worker`` line is commented out: nothing to port.

Roger starts a worker by hand with ``WorkerSupervisor.start_child(@app,
:channel, @payload, nil)``: the payload runs as a delivery would, with no
broker message. The port's public counterpart is ``roger.Worker.run
(partition_id, payload)``, which runs it in the calling process the way a
worker does. Roger's payload is ``term_to_binary(%Job{id:
"asdf", ...})``; here it is that job encoded by ``Job.encode`` (CBOR).
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal
from tests.integration.roger.jobs import WorkerTest

pytestmark = pytest.mark.timeout(60)


def test_start_worker_in_partition_worker_supervisor(app: str, journal: Journal) -> None:
    """test/roger/worker_test.exs: "start worker in partition worker supervisor"."""
    payload = roger.Job.encode(roger.Job.create(WorkerTest.TestJob, [], id="asdf"))
    roger.Worker.run(app, payload=payload)

    journal.wait("job_ok", job="asdf", timeout=1.0)  # Roger: within 1000 ms
