"""ClusterClient: cluster calls from a process without a node, and the
``roger.System`` facade's fall-back to it in a producer process."""

from __future__ import annotations

import pytest

import roger_actors as roger
from roger_actors.cluster_client import ClusterClient
from roger_actors.job import set_enqueue_hook
from roger_actors.system_protocol import CommandError
from tests.cluster_harness import Cluster
from tests.partition_harness import BROKER

#: The ``cluster`` fixture gives its nodes a cluster secret (the clients get it too).
SIGNED_CLUSTER = True


@pytest.fixture
def cluster(cluster: Cluster) -> Cluster:
    """The cluster of conftest, with its in-process node started."""
    cluster.start()
    return cluster


def test_client_calls_and_casts_without_being_a_member(cluster: Cluster) -> None:
    client = ClusterClient(
        {
            "amqp": f"{BROKER}?name=roger-test-client",
            "system_exchange_prefix": cluster.prefix,
            "cluster_secret": cluster.secret,
        }
    )
    try:
        assert client.members() == [cluster.node_name]
        assert client.call("ping") == [(cluster.node_name, "pong")]
        [(node, error)] = client.call("no_such_command", ["x"], timeout=3)
        assert node == cluster.node_name and isinstance(error, CommandError)
        assert "no_such_command" in error.message
        client.cast("ping")
        # The client neither answers commands nor counts as a member.
        assert roger.System.call("ping", timeout=2) == [(cluster.node_name, "pong")]
        assert cluster.members() == [cluster.node_name]
        with pytest.raises(ValueError, match="timeout"):
            client.call("ping", timeout=0)
    finally:
        client.close()
        client.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        client.call("ping")


def test_client_with_unreachable_broker_raises_connection_error() -> None:
    client = ClusterClient({"amqp": "amqp://guest:guest@127.0.0.1:1/"})
    try:
        with pytest.raises(ConnectionError):
            client.call("ping")
    finally:
        client.close()


def test_system_facade_needs_a_node_or_a_producer() -> None:
    roger.stop()
    with pytest.raises(roger.NotStartedError):
        roger.System.call("ping")
    with pytest.raises(roger.NotStartedError):
        roger.System.cast("ping")


def test_system_facade_uses_the_producers_client(cluster: Cluster) -> None:
    config = {
        "amqp": BROKER,
        "system_exchange_prefix": cluster.prefix,
        "cluster_secret": cluster.secret,
    }
    node = cluster.node
    from roger_actors.runtime import _runtime

    # Pretend this process runs only a producer: the facade must go through a
    # ClusterClient, which stop() closes.
    saved = _runtime.node
    _runtime.node = None
    try:
        roger.start_producer(config)
        assert roger.System.call("ping") == [(cluster.node_name, "pong")]
        roger.System.cast("ping")
        client = _runtime.cluster_client
        assert client is not None
        roger.stop()
        assert _runtime.cluster_client is None and client._closed
    finally:
        _runtime.node = saved
        set_enqueue_hook(node.enqueuer)  # stop() above cleared the node's
