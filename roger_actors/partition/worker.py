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

import dataclasses
import logging
import os
import time
import traceback
from typing import Any

from roger_actors.callbacks import WorkerCallback
from roger_actors.clock import now
from roger_actors.config import Config
from roger_actors.job import Job, set_allowed_modules
from supervision import Server

from .control import RETURN_UNSTARTED, ControlSocket
from .messages import JobFinished, JobsFinished, RunJobs, WorkerReady

log = logging.getLogger("roger_actors.worker")

#: Report the outcomes gathered so far once this many seconds passed since the
#: last report, even in the middle of a batch.
FLUSH_SECONDS = 0.05


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
        self.control = ControlSocket()
        self.send(owner, WorkerReady(os.getpid(), self.address, self.control.name))

    def handle_info(self, message: Any) -> None:
        """Run a ``RunJobs`` batch; anything else is logged."""
        if not isinstance(message, RunJobs):
            super().handle_info(message)
            return
        results: list[JobFinished] = []
        last_report = time.monotonic()
        self.control.pending()  # signals meant for an earlier batch
        returning = False
        for index, (token, job) in enumerate(message.items):
            if index and not returning:
                returning = RETURN_UNSTARTED in self.control.pending()
            if returning:
                results.append(JobFinished(token, "returned"))
                continue
            began = time.monotonic()
            result = self.run_job(token, job)
            results.append(dataclasses.replace(result, seconds=time.monotonic() - began))
            if time.monotonic() - last_report > FLUSH_SECONDS:
                self.send(self.owner, JobsFinished(results))
                results, last_report = [], time.monotonic()
        if results:
            self.send(self.owner, JobsFinished(results))

    def terminate(self, reason: Any) -> None:
        """Release the control socket."""
        control = getattr(self, "control", None)
        if control is not None:
            control.close()

    def run_job(self, token: int, queued: Job) -> JobFinished:
        """Run one job with its callbacks; never raises."""
        job = queued.started(now())
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
            return JobFinished(token, outcome, ("error", repr(exc)))
        run_callback(self.callbacks, "after_run", pid, job, result, state)
        return JobFinished(token, "done")
