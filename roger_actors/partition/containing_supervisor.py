"""Roger's ContainingSupervisor: the supervision tree of one partition.

``one_for_one`` over, in start order:

- ``global``: the partition's :class:`~roger_actors.partition.global_server.Global`
  (a standby on this node unless RabbitMQ made it the active one);
- ``jobs``: a :class:`JobsSupervisor`, ``one_for_all`` over the WorkerSupervisor
  (started first) and the Consumer. The Consumer hands jobs to the workers
  and tracks them, so neither is useful without the other: if either dies,
  both restart, and jobs that were running come back from the broker (their
  deliveries were never acked).

A Global that crashes restarts alone (its requests wait in the broker
meanwhile, or go to another node's Global); it never takes running jobs
down. Shutdown is in reverse: jobs first, then Global, which stores the
state before it lets go of the request queue.
"""

from __future__ import annotations

from typing import Any

from roger_actors.config import Config
from supervision import ChildSpec, Supervisor, SupervisorSpec

from .consumer import Consumer
from .global_server import Global
from .worker_supervisor import WorkerSupervisor


class ContainingSupervisor(Supervisor):
    """Per-partition supervisor: Global + the jobs subtree, one_for_one."""

    def init(
        self, partition_id: str, queues: dict[str, int], config: Config, registry: Any = None
    ) -> SupervisorSpec:
        """Children: ``global`` (Global) then ``jobs`` (JobsSupervisor)."""
        return SupervisorSpec(
            [
                ChildSpec("global", (Global, (partition_id, config)), shutdown=15.0),
                ChildSpec(
                    "jobs",
                    (JobsSupervisor, (partition_id, dict(queues), config, registry)),
                    shutdown="infinity",
                    type="supervisor",
                ),
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
                    (Consumer, (partition_id, dict(queues), config, registry)),
                    shutdown=config.shutdown_timeout + 5,
                ),
            ],
            strategy="one_for_all",
            max_restarts=5,
            max_seconds=30,
        )
