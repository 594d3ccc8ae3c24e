"""Specification: on the light base every partition's tree shares the
partition host process, and a crash inside one partition restarts that
partition only; the host and the other partitions, their running jobs
included, go on untouched. (On multiprocTCPBase the same is checked by
SIGKILLing one actor's own process: ``tests/integration/test_partition_faults.py``.)

Run with ``scripts/test tests/integration/test_partition_isolation.py``.
"""

from __future__ import annotations

import pytest

import supervision
from roger_actors.node.registry import ConsumerOf
from tests.node_procs import partition_host
from tests.partition_harness import NodeHarness, wait_for
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(90)


def _crash_consumer(h: NodeHarness, partition_id: str) -> object:
    """Stop ``partition_id``'s Consumer with an abnormal reason (a crash, as
    its supervisor sees it); return the address it had."""
    node = h.node
    assert node is not None
    consumer = node.call(ConsumerOf(partition_id))
    supervision.stop(consumer, "crashed by the test", timeout=10, system=node.app.system)
    return consumer


def test_a_crashed_consumer_restarts_its_own_partition_while_anothers_job_runs_on(
    h: NodeHarness,
) -> None:
    h.start(actor_system_base="light")
    crashing = h.start_partition({"default": 1}, name="a")
    bystander = h.start_partition({"default": 1}, name="b")
    h.enqueue(TimedJob, bystander, "long", 2)
    [running] = h.wait_events("start", 1)
    host = partition_host()

    old = _crash_consumer(h, crashing)

    node = h.node
    assert node is not None
    wait_for(
        lambda: node.call(ConsumerOf(crashing)) != old,
        what="the crashed partition's Consumer restarted",
    )
    h.enqueue(TimedJob, crashing, "after", 0)  # runs once the new Consumer consumes
    h.wait_tags("after_run", {"long", "after"})
    longs = [e for e in h.events("start") if e["tag"] == "long"]
    assert [e["pid"] for e in longs] == [running["pid"]], "the other job ran once, undisturbed"
    assert partition_host() == host, "the partition host went on"
