"""Specification: one worker pool per node (``worker_pool_size``), shared fairly
by the partitions' queues, on RabbitMQ with real worker processes.

The node runs at most ``worker_pool_size`` jobs at once over all its
partitions, each queue also capped by its ``max_workers``; a partition
whose jobs arrive while another one keeps the whole pool busy with its
backlog gets a worker when one of the other's batches ends, not when that
backlog is done.

Run with ``scripts/test tests/integration/test_worker_pool_shared.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.partition_harness import NodeHarness
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def _most_at_once(starts: list[dict[str, Any]], ends: list[dict[str, Any]]) -> int:
    """The most jobs running at one time, from their start and end events."""
    moments = sorted([(e["t"], 1) for e in starts] + [(e["t"], -1) for e in ends])
    running = most = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


def test_the_node_runs_at_most_worker_pool_size_jobs_and_a_second_partition_is_not_starved(
    h: NodeHarness,
) -> None:
    h.start(actor_system_base="light", worker_pool_size=2)
    loud = h.start_partition({"default": 4}, name="loud")
    quiet = h.start_partition({"default": 4}, name="quiet")
    backlog = [f"loud{i}" for i in range(10)]
    for tag in backlog:
        h.enqueue(TimedJob, loud, tag, 0.25)
    h.wait_events("start", 2)
    arrivals = ["quiet0", "quiet1"]
    for tag in arrivals:
        h.enqueue(TimedJob, quiet, tag, 0.05)

    h.wait_tags("end", set(backlog + arrivals), timeout=60)
    starts, ends = h.events("start"), h.events("end")
    assert _most_at_once(starts, ends) <= 2, h.summary()
    first_quiet = min(e["t"] for e in starts if e["tag"] in arrivals)
    last_loud = max(e["t"] for e in starts if e["tag"] in backlog)
    assert first_quiet < last_loud, "the quiet partition waited for the loud one's backlog"
    assert len({e["pid"] for e in starts if e["tag"] in arrivals} & {
        e["pid"] for e in starts if e["tag"] in backlog
    }) == 0, "a worker process serves one partition only"
