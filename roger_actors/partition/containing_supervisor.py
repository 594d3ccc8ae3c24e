"""Roger's ContainingSupervisor: the supervision tree of one partition.

``one_for_one`` over, in start order:

- ``jobs``: a :class:`JobsSupervisor`, ``one_for_all`` over the WorkerSupervisor
  (started first) and the Consumer. The Consumer hands jobs to the workers
  and tracks them, so neither is useful without the other: if either dies,
  both restart, and jobs that were running come back from the broker (their
  deliveries were never acked).
- ``global``: the partition's :class:`~roger_actors.partition.global_server.GlobalServer`
  (a standby on this node unless RabbitMQ made it the active one). The
  Consumer consumes nothing until a Global answers it, so starting Global
  second costs nothing; starting it first was measured to double the CPU
  the worker processes spend per job (bench/README.md).

A Global that crashes restarts alone (its requests wait in the broker
meanwhile, or go to another node's Global); it never takes running jobs
down. Shutdown is in reverse: Global first, which stores the state before
it lets go of the request queue (another node's Global, if any, takes
over), then the jobs subtree.
"""

from __future__ import annotations

from typing import Any

from roger_actors.config import Config
from supervision import ChildSpec, Supervisor, SupervisorSpec

from .consumer import ConsumerServer
from .global_server import GlobalServer
from .worker_supervisor import WorkerSupervisor


class ContainingSupervisor(Supervisor):
    """Per-partition supervisor: Global + the jobs subtree, one_for_one."""

    def init(
        self, partition_id: str, queues: dict[str, int], config: Config, registry: Any = None
    ) -> SupervisorSpec:
        """Children: ``jobs`` (JobsSupervisor) then ``global`` (Global)."""
        return SupervisorSpec(
            [
                ChildSpec(
                    "jobs",
                    (JobsSupervisor, (partition_id, dict(queues), config, registry)),
                    shutdown="infinity",
                    type="supervisor",
                ),
                ChildSpec("global", (GlobalServer, (partition_id, config)), shutdown=15.0),
            ],
            strategy="one_for_one",
            max_restarts=5,
            max_seconds=30,
        )


class JobsSupervisor(Supervisor):
    """WorkerSupervisor + Consumer of one partition, one_for_all."""

    def init(
        self, partition_id: str, queues: dict[str, int], config: Config, registry: Any = None
    ) -> SupervisorSpec:
        """Children: ``workers`` (WorkerSupervisor) then ``consumer``."""
        return SupervisorSpec(
            [
                ChildSpec("workers", WorkerSupervisor, shutdown="infinity", type="supervisor"),
                ChildSpec(
                    "consumer",
                    (ConsumerServer, (partition_id, dict(queues), config, registry)),
                    shutdown=config.shutdown_timeout + 5,
                ),
            ],
            strategy="one_for_all",
            max_restarts=5,
            max_seconds=30,
        )
