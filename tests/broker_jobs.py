"""Jobs for the broker-side tests (delivery limit, consumer_timeout, leases).

They report through :func:`tests.roger_test_jobs2.record` (JSON lines in the
file named by ``args[0]``), so one ``JsonCallbacks`` serves them all.
"""

from __future__ import annotations

import os
import time
from typing import Any

from roger_actors import Job
from tests.roger_test_jobs2 import record

#: The longest a :class:`GateJob` waits for its gate file (seconds).
GATE_WAIT_SECONDS = 60.0


class GateJob(Job):
    """args: [path, tag, gate_file] -> "start", waits until ``gate_file``
    exists (at most :data:`GATE_WAIT_SECONDS`), "end"; returns the tag."""

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1], retry_count=self.retry_count)
        deadline = time.monotonic() + GATE_WAIT_SECONDS
        while not os.path.exists(args[2]) and time.monotonic() < deadline:
            time.sleep(0.05)
        record(args[0], "end", tag=args[1])
        return args[1]


class LimitedGateJob(GateJob):
    """A :class:`GateJob` with a ``max_execution_time`` of 8 s."""

    max_execution_time = 8
