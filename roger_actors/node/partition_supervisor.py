"""The PartitionSupervisor: the node's supervisor of its partitions' trees.

Its children are the partitions' ContainingSupervisors (id = partition id),
added and removed at run time by the Partition registry
(:mod:`roger_actors.node.registry`).
"""

from __future__ import annotations

from typing import Any

from supervision import ChildSpec, Supervisor, SupervisorSpec

from .registry import PartitionExited

__all__ = ["PartitionSupervisor"]


class PartitionSupervisor(Supervisor):
    """Supervises the partitions of this node (children added at run time).

    Partitions are temporary children: the registry starts them, and starts
    again with back-off those that ended (see :mod:`roger_actors.node.registry`),
    so a fault in a partition never counts against this supervisor's
    intensity, nor reaches the root."""

    def init(self) -> SupervisorSpec:
        """No children at start; one_for_one, 10 restarts in 10 s."""
        return SupervisorSpec([], "one_for_one", max_restarts=10, max_seconds=10)

    def child_exited(self, address: Any, spec: ChildSpec, reason: Any) -> None:
        """Tell the registry (named in the partition's start arguments) that a
        partition's tree ended: it lists the partition as waiting, and starts
        it again when this supervisor does not (see :mod:`roger_actors.node.registry`)."""
        args = spec.start.args
        registry = args[3] if len(args) > 3 else None
        if registry is not None:
            self.send(registry, PartitionExited(str(spec.id), reason))

