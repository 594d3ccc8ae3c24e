"""Roger's Worker: runs one job at a time in its own OS process.

A worker is started by the partition's WorkerSupervisor on the Consumer's
demand, tells the Consumer it is ready, then runs every ``RunJob`` it is
sent, one after another: ``before_run``, ``perform``, then ``after_run`` or
``on_error`` (and ``on_buried`` when the last retry level failed), and
reports ``JobFinished``. A callback that raises is logged and never takes
the worker down. Killing the worker's process is how a running job is
stopped (``max_execution_time``, cancellation): the Consumer handles that
job's outcome then.
"""

from __future__ import annotations

import logging
import os
import traceback
from typing import Any

from roger_actors.callbacks import WorkerCallback
from roger_actors.clock import now
from roger_actors.config import Config
from roger_actors.job import Job, set_allowed_modules
from supervision import Server

from .messages import JobFinished, RunJob, WorkerReady

log = logging.getLogger("roger_actors.worker")


def run_callback(callbacks: WorkerCallback | None, name: str, *args: Any) -> Any:
    """Call ``callbacks.<name>(*args)``; log and swallow any exception."""
    if callbacks is None:
        return None
    try:
        return getattr(callbacks, name)(*args)
    except Exception:
        log.exception("worker callback %s raised", name)
        return None


def error_outcome(job: Job, retry_levels: tuple[int, ...]) -> str:
    """What happens to a job that failed: ``error``, ``retry`` or ``buried``."""
    if not Job.is_retryable(job):
        return "error"
    return "retry" if job.retry_count < len(retry_levels) else "buried"


class Worker(Server):
    """Runs jobs for one queue of one partition; see the module docstring."""

    def init(self, owner: Any, partition_id: str, queue: str, config: Config) -> None:
        """``owner`` is the Consumer's address."""
        self.owner = owner
        self.partition_id = partition_id
        self.queue = queue
        self.retry_levels = config.retry_levels
        set_allowed_modules(config.allowed_job_modules)
        callbacks_class = config.callbacks_class()
        self.callbacks = callbacks_class() if callbacks_class is not None else None
        self.send(owner, WorkerReady(os.getpid(), self.address))

    def handle_info(self, message: Any) -> None:
        """Run a ``RunJob``; anything else is logged."""
        if isinstance(message, RunJob):
            self.send(self.owner, self.run(message))
        else:
            super().handle_info(message)

    def run(self, message: RunJob) -> JobFinished:
        """Run one job with its callbacks; never raises."""
        job = message.job.copy_with(started_at=now())
        pid = self.partition_id
        state = run_callback(self.callbacks, "before_run", pid, job)
        try:
            result = Job.execute(job)
        except Exception as exc:
            stack = traceback.extract_tb(exc.__traceback__)
            error = ("error", exc)
            run_callback(self.callbacks, "on_error", pid, job, error, stack, state)
            outcome = error_outcome(job, self.retry_levels)
            if outcome == "buried":
                run_callback(self.callbacks, "on_buried", pid, job, error, stack, state)
            log.info("job %s (%s) failed: %r -> %s", job.id, job.module, exc, outcome)
            return JobFinished(message.token, outcome, ("error", repr(exc)))
        run_callback(self.callbacks, "after_run", pid, job, result, state)
        return JobFinished(message.token, "done")
