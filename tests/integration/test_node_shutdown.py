"""Graceful node shutdown (ShutdownHandler) and the node's System, on the real broker."""

from __future__ import annotations

import time

import pytest

import roger_actors as roger
from roger_actors.queue import Queue
from tests.partition_harness import NodeHarness, counts, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)



def test_the_node_system_reports_its_broker_connection(h: NodeHarness) -> None:
    node = h.start()
    wait_for(node.is_connected, what="System connected to the broker")


def test_graceful_stop_lets_a_running_job_finish_before_the_node_stops(h: NodeHarness) -> None:
    h.start(shutdown_timeout=20)
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "running", 1.5)
    h.wait_events("start", 1)

    roger.stop()

    assert h.tags("end") == {"running"}, "stop() returned before the running job ended"
    assert h.tags("after_run") == {"running"}
    assert counts(Queue.make_name(pid, "default")) == (0, 0), "the finished job was acked"


def test_a_job_still_running_at_the_shutdown_deadline_goes_back_to_its_queue(
    h: NodeHarness,
) -> None:
    h.start(shutdown_timeout=1)
    pid = h.start_partition({"default": 1})
    h.enqueue(TimedJob, pid, "too-long", 30)
    h.wait_events("start", 1)

    started = time.monotonic()
    roger.stop()

    assert time.monotonic() - started < 20, "stop() waited far past shutdown_timeout"
    assert "too-long" not in h.tags("end")
    assert counts(Queue.make_name(pid, "default")) == (1, 0), "the killed job is back"
