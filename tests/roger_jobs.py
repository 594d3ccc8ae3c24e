"""Jobs used by the integration tests. They report through files so that
the test process sees what ran in worker processes."""

from __future__ import annotations

import os
import time
from typing import Any

from roger_actors import Job, WorkerCallback


def append(path: str, line: str) -> None:
    """Append one line to ``path``."""
    with open(path, "a") as f:
        f.write(line + "\n")


class RecordJob(Job):
    """args: [path, tag] -> appends "ran <tag> <pid>"."""

    def perform(self, args: Any) -> Any:
        append(args[0], f"ran {args[1]} {os.getpid()}")
        return args[1]


class FailingJob(Job):
    """args: [path, tag] -> appends "fail <tag> <retry_count>" and raises."""

    retryable = True

    def perform(self, args: Any) -> Any:
        append(args[0], f"fail {args[1]}")
        raise ValueError(f"failing job {args[1]}")


class SlowJob(Job):
    """args: [path, tag, seconds] -> appends "start <tag>", sleeps, "end <tag>"."""

    max_execution_time = 1

    def perform(self, args: Any) -> Any:
        append(args[0], f"start {args[1]} {os.getpid()}")
        time.sleep(args[2])
        append(args[0], f"end {args[1]}")


class CrashJob(Job):
    """Kills its own worker process."""

    def perform(self, args: Any) -> Any:
        append(args[0], f"crash {args[1]}")
        os._exit(3)


class RecordingCallbacks(WorkerCallback):
    """Writes every callback to the file in ``job.args[0]``."""

    def before_run(self, partition_id: str, job: Job) -> Any:
        append(job.args[0], f"before_run {job.id}")
        return "state"

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        append(job.args[0], f"after_run {job.id} {result} {state}")

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        append(job.args[0], f"on_error {job.id} {error[0]}")

    def on_buried(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        append(job.args[0], f"on_buried {job.id} {error[0]}")


class NoopJob(Job):
    """Does nothing (benchmarks)."""

    def perform(self, args: Any) -> Any:
        return None
