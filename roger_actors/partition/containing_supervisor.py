"""Roger's ContainingSupervisor: the supervision tree of one partition.

``one_for_all`` over the WorkerSupervisor (started first) and the Consumer:
the Consumer hands jobs to the workers and tracks them, so neither is
useful without the other. If either dies, both restart; jobs that were
running come back from the broker (their deliveries were never acked).
"""

from __future__ import annotations

from typing import Any

from roger_actors.config import Config
from supervision import ChildSpec, Supervisor, SupervisorSpec

from .consumer import Consumer
from .worker_supervisor import WorkerSupervisor


class ContainingSupervisor(Supervisor):
    """Per-partition supervisor: WorkerSupervisor + Consumer, one_for_all."""

    def init(
        self, partition_id: str, queues: dict[str, int], config: Config, registry: Any = None
    ) -> SupervisorSpec:
        """Children: ``workers`` (WorkerSupervisor) then ``consumer``."""
        return SupervisorSpec(
            [
                ChildSpec("workers", WorkerSupervisor, shutdown="infinity"),
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
