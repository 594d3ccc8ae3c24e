"""Roger's WorkerSupervisor: the per-partition supervisor of job workers.

A :class:`~supervision.DynamicSupervisor` whose children are ``temporary``
workers started on the Consumer's demand. Because the Consumer hands jobs
to workers it did not start itself, the WorkerSupervisor tells the worker's
``owner`` (given in the worker's init kwargs) whenever a worker ends, with
its exit reason, so that a job held by a killed or crashed worker is
accounted for.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from supervision import DynamicSupervisor, DynamicSupervisorSpec
from supervision.supervisor import _Child, _Wait

from .messages import WorkerExited


class WorkerSupervisor(DynamicSupervisor):
    """Supervises the workers of one partition; notifies their owner of exits."""

    def init(self, *args: Any, **kwargs: Any) -> DynamicSupervisorSpec:
        """Workers are temporary: generous intensity, no bound on children."""
        return DynamicSupervisorSpec(max_restarts=1000, max_seconds=1)

    def _on_child_exit(self, child: _Child, reason: Any) -> Generator[_Wait, Any, None]:
        address = child.address
        yield from super()._on_child_exit(child, reason)
        owner = child.spec.start.kwargs.get("owner")
        if owner is not None:
            self.send(owner, WorkerExited(address, reason))

    def _terminate(self, child: _Child) -> Generator[_Wait, Any, None]:
        address = child.address
        yield from super()._terminate(child)
        owner = child.spec.start.kwargs.get("owner")
        if owner is not None:
            self.send(owner, WorkerExited(address, "shutdown"))
