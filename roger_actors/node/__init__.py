"""The node level: a Roger node's application tree, its actors and the facades.

One concept per module:

- :mod:`~roger_actors.node.application`: :class:`Node`, :func:`start`,
  :func:`stop`, :func:`child_spec`, :func:`start_producer` and the application
  supervisor, on this process's :class:`~roger_actors.runtime.Runtime`;
- :mod:`~roger_actors.node.partition_supervisor`: the PartitionSupervisor;
- :mod:`~roger_actors.node.registry`: the Partition registry actor;
- :mod:`~roger_actors.node.system`: the SystemServer actor (cluster membership
  and System commands) and its client functions;
- :mod:`~roger_actors.node.apply_system`: ApplySystem, which runs the commands;
- :mod:`~roger_actors.node.shutdown_handler`: the graceful stop sequence;
- :mod:`~roger_actors.node.info`: ``Info`` and ``NodeInfo``;
- :mod:`~roger_actors.node.facades`: ``Partition``, ``Consumer``, ``Worker``,
  ``Global`` and ``System`` on the current node.

The names below are loaded on first use, as the top-level package does: a
module that imports one submodule (``roger_actors.node.system``, say) does
not import the whole application with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..runtime import Runtime, install_worker_client, process_publisher
    from .application import (
        CALL_TIMEOUT,
        EMBED_SEARCH_DEPTH,
        LAST_WORDS_SECONDS,
        STOP_MARGIN,
        TREE_CALL_TIMEOUT,
        EmbeddedNode,
        Node,
        RogerSupervisor,
        child_spec,
        current,
        producer_cluster_client,
        producer_config,
        purge,
        start,
        start_producer,
        stop,
        stop_on_signals,
    )
    from .facades import Consumer, Global, Partition, System, Worker
    from .partition_supervisor import PartitionSupervisor

#: Where each name of this package is defined (relative to it).
_WHERE = {
    **dict.fromkeys(
        (
            "CALL_TIMEOUT",
            "EMBED_SEARCH_DEPTH",
            "LAST_WORDS_SECONDS",
            "STOP_MARGIN",
            "TREE_CALL_TIMEOUT",
            "EmbeddedNode",
            "Node",
            "RogerSupervisor",
            "child_spec",
            "current",
            "producer_cluster_client",
            "producer_config",
            "purge",
            "start",
            "start_producer",
            "stop",
            "stop_on_signals",
        ),
        ".application",
    ),
    **dict.fromkeys(("Consumer", "Global", "Partition", "System", "Worker"), ".facades"),
    "PartitionSupervisor": ".partition_supervisor",
    # the process runtime, below the node (partitions' workers use it too)
    **dict.fromkeys(("Runtime", "install_worker_client", "process_publisher"), "..runtime"),
}


def __getattr__(name: str) -> object:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'roger_actors.node' has no attribute {name!r}")
    return getattr(importlib.import_module(where, __name__), name)


__all__ = [
    "CALL_TIMEOUT",
    "EMBED_SEARCH_DEPTH",
    "LAST_WORDS_SECONDS",
    "STOP_MARGIN",
    "TREE_CALL_TIMEOUT",
    "Consumer",
    "EmbeddedNode",
    "Global",
    "Node",
    "Partition",
    "PartitionSupervisor",
    "RogerSupervisor",
    "Runtime",
    "System",
    "Worker",
    "child_spec",
    "current",
    "install_worker_client",
    "process_publisher",
    "producer_cluster_client",
    "producer_config",
    "purge",
    "start",
    "start_producer",
    "stop",
    "stop_on_signals",
]
