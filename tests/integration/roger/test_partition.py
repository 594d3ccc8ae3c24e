"""Port of Roger's ``test/roger/partition_test.exs`` (no AppCase: each test
starts and stops its partition itself).

Roger's ``Partition.start`` answers ``{:ok, pid}``; the port's answers ``"running"``.
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors import node as roger_node
from supervision import terminate_child
from tests.integration.roger.conftest import RogerHarness
from tests.partition_harness import wait_for

pytestmark = pytest.mark.timeout(60)


def has_test_app(apps: dict[str, object], app: str) -> bool:
    return apps.get(app) is not None


def test_start_and_stop_partition(node: RogerHarness) -> None:
    """test/roger/partition_test.exs: "start and stop partition"."""
    app = node.partition_id("app")
    assert roger.Partition.start(app, {"default": 10}) == "running"

    assert has_test_app(roger.NodeInfo.running_partitions(), app)

    assert roger.Partition.stop(app) is None
    # Roger sleeps 50 ms here; the port's stop returns once the partition is gone.

    assert not has_test_app(roger.NodeInfo.running_partitions(), app)


def test_automatic_restart_after_supervisor_stop(node: RogerHarness) -> None:
    """test/roger/partition_test.exs: "automatic restart after supervisor stop"."""
    app = node.partition_id("app")
    roger.Partition.start(app, {"default": 10})
    # Roger's start returns once the partition runs (issue 10 item 3): wait.
    node.wait_consuming(app, {"default": 10})

    # Roger's PartitionSupervisor.stop_child(pid): the partition's tree is
    # terminated by its supervisor (not a crash).
    current = roger_node.current()
    partitions = current._child_address("partitions")
    terminate_child(partitions, app, system=current.app.system)

    # Roger: 50 ms later it is waiting, not running.
    wait_for(
        lambda: not has_test_app(roger.NodeInfo.running_partitions(), app)
        and has_test_app(roger.NodeInfo.waiting_partitions(), app),
        timeout=1.0,
        what="the partition waiting, not running",
    )

    # Roger: within 4 s it restarts.
    wait_for(
        lambda: has_test_app(roger.NodeInfo.running_partitions(), app)
        and not has_test_app(roger.NodeInfo.waiting_partitions(), app),
        timeout=4.0,
        what="the partition running again",
    )

    assert roger.Partition.stop(app) is None


def test_test_start_stop_start(node: RogerHarness) -> None:
    """test/roger/partition_test.exs: "test start / stop / start"."""
    app2 = node.partition_id("app2")
    queues = [("default", 20), ("expression", 0), ("fast", 20)]
    assert roger.Partition.start(app2, queues) == "running"
    roger.Partition.stop(app2)
    assert roger.Partition.start(app2, queues) == "running"

    assert roger.Partition.stop(app2) is None
