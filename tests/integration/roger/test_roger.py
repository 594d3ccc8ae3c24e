"""Port of Roger's ``test/roger_test.exs``.

Its ``doctest Roger`` covers nothing: ``Roger``'s docs in lib/roger.ex have
no ``iex>`` example.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import RogerHarness
from tests.partition_harness import wait_for

pytestmark = pytest.mark.timeout(60)


def test_predefined_partitions_get_started_automatically(
    roger_node: Callable[[], RogerHarness],
) -> None:
    """test/roger_test.exs: "predefined partitions get started automatically"."""
    # Roger stops its application, puts {app_atom, [default: 10, other: 2]}
    # in :partitions and starts it again; here a node starts with that
    # configuration (partition ids are strings; Roger turns the atom into one).
    h = roger_node()
    app = h.partition_id("app")
    h.start(partitions={app: {"default": 10, "other": 2}})

    # Roger sleeps 200 ms for the partitions to start: wait for it.
    wait_for(lambda: app in roger.NodeInfo.running_partitions(), what="the partition running")

    apps = roger.NodeInfo.running_partitions()
    assert apps[app] is not None
    assert isinstance(apps[app], dict)
    assert len(apps[app]) == 2
    assert isinstance(apps[app]["default"], dict)
    assert isinstance(apps[app]["other"], dict)

    assert apps[app]["default"]["max_workers"] == 10
    assert apps[app]["other"]["max_workers"] == 2
