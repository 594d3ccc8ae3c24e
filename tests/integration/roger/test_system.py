"""Port of Roger's ``test/roger/system_test.exs``.

Roger's test runs on its suite's node; here a node of the module with a
System exchange prefix of its own (so no other node on the broker answers).
"""

from __future__ import annotations

import pytest

import roger_actors as roger
from tests.integration.roger.conftest import RogerHarness

pytestmark = pytest.mark.timeout(60)


def test_cross_cluster_rpc_call(node: RogerHarness) -> None:
    """test/roger/system_test.exs: "cross-cluster RPC call"."""
    replies = roger.System.call("ping")
    assert replies == [(node.node_name, "pong")]


def test_cross_cluster_broadcast(node: RogerHarness) -> None:
    """test/roger/system_test.exs: "cross-cluster broadcast"."""
    assert roger.System.cast("ping") is None
    # Roger then sleeps 100 ms (for the cast to be handled); here the node
    # answering a call after it stands for that.
    assert roger.System.call("ping") == [(node.node_name, "pong")]
