"""Roger's WorkerSupervisor: the per-partition supervisor of job workers.

A :class:`~supervision.DynamicSupervisor` whose children are ``temporary``
workers started on the Consumer's demand. Because the Consumer hands jobs
to workers it did not start itself, the WorkerSupervisor tells the worker's
``owner`` (given in the worker's init kwargs) whenever a worker ends, with
its exit reason, so that a job held by a killed or crashed worker is
accounted for.

At its start it removes the scoreboard files of workers that died with no
reader left to remove them (:func:`~roger_actors.partition.control.sweep_scoreboards`).
"""

from __future__ import annotations

import logging
from typing import Any

from supervision import ChildSpec, DynamicSupervisor, DynamicSupervisorSpec

from .control import sweep_scoreboards
from .messages import WorkerExited

log = logging.getLogger("roger_actors.worker_supervisor")


class WorkerSupervisor(DynamicSupervisor):
    """Supervises the workers of one partition; notifies their owner of exits."""

    def init(self, *args: Any, **kwargs: Any) -> DynamicSupervisorSpec:
        """Workers are temporary: generous intensity, no bound on children.
        Dead workers' leftover scoreboard files are swept first."""
        try:
            swept = sweep_scoreboards()
        except Exception:  # a sweep never keeps the partition from starting
            log.exception("sweeping dead workers' scoreboards failed")
        else:
            if swept:
                log.info("removed %d scoreboard file(s) of dead workers", swept)
        return DynamicSupervisorSpec(max_restarts=1000, max_seconds=1)

    def child_exited(self, address: Any, spec: ChildSpec, reason: Any) -> None:
        """Tell the worker's owner (its Consumer) that the worker ended."""
        owner = spec.start.kwargs.get("owner")
        if owner is not None:
            self.send(owner, WorkerExited(address, reason))
