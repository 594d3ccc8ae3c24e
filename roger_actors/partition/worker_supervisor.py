"""Roger's WorkerSupervisor: the per-partition supervisor of job workers.

A :class:`~supervision.DynamicSupervisor` whose children are ``temporary``
workers started on the Consumer's demand. Because the Consumer hands jobs
to workers it did not start itself, the WorkerSupervisor tells the worker's
``owner`` (given in the worker's init kwargs) whenever a worker ends, with
its exit reason, so that a job held by a killed or crashed worker is
accounted for.
"""

from __future__ import annotations

from typing import Any

from supervision import ChildSpec, DynamicSupervisor, DynamicSupervisorSpec

from .messages import WorkerExited


class WorkerSupervisor(DynamicSupervisor):
    """Supervises the workers of one partition; notifies their owner of exits."""

    def init(self, *args: Any, **kwargs: Any) -> DynamicSupervisorSpec:
        """Workers are temporary: generous intensity, no bound on children."""
        return DynamicSupervisorSpec(max_restarts=1000, max_seconds=1)

    def child_exited(self, address: Any, spec: ChildSpec, reason: Any) -> None:
        """Tell the worker's owner (its Consumer) that the worker ended."""
        owner = spec.start.kwargs.get("owner")
        if owner is not None:
            self.send(owner, WorkerExited(address, reason))
