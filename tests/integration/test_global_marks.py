"""Cancel marks expire after ``cancel_mark_ttl`` on a real node (review M4)."""

from __future__ import annotations

import time

import pytest

import roger_actors as roger
from roger_actors import Queue
from tests.partition_harness import NodeHarness, counts, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(60)


def test_a_cancel_mark_expires_and_its_job_then_runs(h: NodeHarness) -> None:
    h.start(cancel_mark_ttl=1)
    pid = h.start_partition({"default": 1})
    roger.Consumer.pause(pid, "default")
    job = h.enqueue(TimedJob, pid, "late", 0)
    wait_for(lambda: counts(Queue.make_name(pid, "default")) == (1, 0), what="the job queued")
    roger.Global.cancel_job(pid, job.id)
    assert roger.Global.is_cancelled(pid, job.id) is True

    # Marks have whole-second times: gone within two seconds.
    wait_for(lambda: roger.Global.is_cancelled(pid, job.id) is False, what="the mark expired")
    began = time.monotonic()
    roger.Consumer.resume(pid, "default")

    h.wait_tags("after_run", {"late"})
    assert not h.events("on_cancel")
    assert time.monotonic() - began < 10
