"""More jobs and callbacks for the partition tests (see ``roger_test_jobs2``)."""

from __future__ import annotations

from typing import Any

from roger_actors import Job, WorkerCallback
from tests.roger_test_jobs2 import record


class RaisingCallbacks(WorkerCallback):
    """Every callback raises after recording that it ran."""

    def before_run(self, partition_id: str, job: Job) -> Any:
        record(job.args[0], "cb_before_run", tag=job.args[1])
        raise RuntimeError("before_run is broken")

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        record(job.args[0], "cb_after_run", tag=job.args[1], state=state)
        raise RuntimeError("after_run is broken")

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        record(job.args[0], "cb_on_error", tag=job.args[1])
        raise RuntimeError("on_error is broken")


class BuryAtOnceJob(Job):
    """Retryable, fails; with ``retry_levels = []`` it is buried at the first failure."""

    retryable = True

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        raise ValueError(f"bury {args[1]}")
