"""Port of Roger's ``test/roger/consumer/retry_test.exs`` (AppCase with
``Callbacks``: ``on_error`` reports ``{:retry, job.retry_count}`` for the
job's RuntimeError "fail!", ``on_buried`` reports ``{:retry, :buried}``).

Roger sets ``:retry_levels`` in each test (it is read at each retry); the
port reads it when the node starts, so each test starts a node of its own.
Roger's second test uses ``retry_levels: [0]``; the port refuses 0 (a level
is at least 1 s), so it uses ``[1]``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import RogerHarness
from tests.integration.roger.jobs import RetryTest
from tests.partition_harness import counts, wait_for

pytestmark = pytest.mark.timeout(90)

Retryable = RetryTest.Retryable


def test_retryable_job(roger_node: Callable[[], RogerHarness]) -> None:
    """test/roger/consumer/retry_test.exs: "retryable job"."""
    h = roger_node()
    h.start(retry_levels=[1, 1, 1])
    app = h.start_partition({"default": 10}, name="app")
    journal = h.new_journal()

    job = roger.Job.create(Retryable, 1)
    roger.Job.enqueue(job, app)

    # Roger: for n in 0..2, {:retry, n} does not come within 500 ms of the
    # previous one (n > 0), then comes within 1500 ms more.
    errors = journal.wait("on_error", 3, job=job.id, timeout=1.5 + 2 * 2.0 + 1.0)
    assert [e["retry_count"] for e in errors] == [0, 1, 2]
    assert all(e["error_type"] == "RuntimeError" and e["message"] == "fail!" for e in errors)
    for previous, this in itertools.pairwise(errors):
        assert 0.5 <= this["t"] - previous["t"] <= 2.0

    # Roger: then {:retry, :buried} within 1500 ms.
    [buried] = journal.wait("on_buried", job=job.id, timeout=3.0)
    assert buried["t"] - errors[-1]["t"] <= 1.5
    # Roger's worker calls exactly one of on_error / on_buried at a failure:
    # the last one is reported as buried only.
    assert [e["retry_count"] for e in journal.events("on_error", job=job.id)] == [0, 1, 2]


def test_retry_queue_buried_limit(roger_node: Callable[[], RogerHarness]) -> None:
    """test/roger/consumer/retry_test.exs: "retry queue buried limit"."""
    h = roger_node()
    h.start(retry_levels=[1])  # Roger: [0]
    app = h.start_partition({"default": 10}, name="app")
    journal = h.new_journal()

    job = roger.Job.create(Retryable, 1)
    for _ in range(101):
        roger.Job.enqueue(job, app)

    journal.wait("on_buried", 101, job=job.id, timeout=30.0)

    # Roger sleeps 50 ms, then reads the buried queue's message count.
    queue_name = roger.Queue.make_name(app, "default", ".buried")
    wait_for(lambda: counts(queue_name) == (100, 0), what="100 buried messages")
    assert counts(queue_name) == (100, 0)
