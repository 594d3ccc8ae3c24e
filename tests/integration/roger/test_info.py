"""Port of Roger's ``test/roger/info_test.exs``.

Roger's ``Info`` answers a list ``[{node, value}]``; the port's answers
``{node_name: value}``. The node has a System exchange prefix of its own, so
it is the only node of its cluster, as the node of Roger's test is.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import Journal, RogerHarness
from tests.integration.roger.jobs import InfoTest
from tests.partition_harness import counts, wait_for

pytestmark = pytest.mark.timeout(60)


def test_get_roger_info_over_the_entire_cluster(app: str, node: RogerHarness) -> None:
    """test/roger/info_test.exs: "get roger info over the entire cluster"."""
    me = node.node_name
    assert list(roger.Info.partitions()) == [me]
    assert list(roger.Info.running_partitions()) == [me]
    assert list(roger.Info.waiting_partitions()) == [me]
    assert list(roger.Info.running_jobs()) == [me]


def test_retrieve_queued_jobs(app: str, journal: Journal) -> None:
    """test/roger/info_test.exs: "retrieve queued jobs"."""
    roger.Consumer.pause(app, "default")

    assert roger.NodeInfo.running_partitions()[app]["default"]["paused"]

    roger.Job.enqueue(roger.Job.create(InfoTest.SlowTestJob, 2), app)
    roger.Job.enqueue(roger.Job.create(InfoTest.SlowTestJob, 3), app)
    # Roger sleeps 50 ms: wait for both to be in the queue.
    wait_for(lambda: counts(roger.Queue.make_name(app, "default")) == (2, 0), what="2 queued")

    q = roger.NodeInfo.running_partitions()[app]["default"]
    assert q["message_count"] == 2
    assert q["consumer_count"] == 0

    jobs = roger.Info.queued_jobs(app, "default")
    [a, b] = jobs
    assert a.args == 3
    assert b.args == 2

    assert a.queued_at > 0
    assert a.started_at == 0

    roger.Consumer.resume(app, "default")
    journal.wait("done", args=2)
    journal.wait("done", args=3)
