"""Jobs and callbacks for the partition integration tests (data path and faults).

Everything reports through JSON lines appended to the file named by
``job.args[0]`` (jobs run in worker processes, callbacks in workers or in the
Consumer): the test process reads them back with :func:`read_events`. Every
job takes ``args = [path, tag, ...]`` so one callbacks class serves them all.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from roger_actors import Job, WorkerCallback


def record(path: str, event: str, **fields: Any) -> None:
    """Append one JSON event (with the writer's pid, parent pid and wall time)."""
    line = {"event": event, "pid": os.getpid(), "ppid": os.getppid(), "t": time.time(), **fields}
    with open(path, "a") as f:
        f.write(json.dumps(line, default=repr) + "\n")


def read_events(path: str | Path, event: str | None = None) -> list[dict[str, Any]]:
    """The events in ``path`` (all, or only those named ``event``); skips a torn last line."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    events = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if event is None or item.get("event") == event:
            events.append(item)
    return events


class TimedJob(Job):
    """args: [path, tag, seconds] -> "start", sleeps, "end"; returns the tag. No time limit."""

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1], retry_count=self.retry_count)
        time.sleep(args[2])
        record(args[0], "end", tag=args[1])
        return args[1]


class LimitedJob(Job):
    """args: [path, tag, seconds]; like TimedJob but ``max_execution_time`` is 1 s."""

    max_execution_time = 1

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        time.sleep(args[2])
        record(args[0], "end", tag=args[1])
        return args[1]


class RetryingFailJob(Job):
    """args: [path, tag] -> records "fail" with its retry_count and raises. Retryable."""

    retryable = True

    def perform(self, args: Any) -> Any:
        record(args[0], "fail", tag=args[1], retry_count=self.retry_count)
        raise ValueError(f"retrying job {args[1]} fails")


class PlainFailJob(Job):
    """args: [path, tag] -> records "fail" and raises. Not retryable."""

    def perform(self, args: Any) -> Any:
        record(args[0], "fail", tag=args[1], retry_count=self.retry_count)
        raise ValueError(f"plain job {args[1]} fails")


class DyingJob(Job):
    """args: [path, tag] -> records "dying" then ends its worker process (exit code 3)."""

    def perform(self, args: Any) -> Any:
        record(args[0], "dying", tag=args[1])
        os._exit(3)


class JsonCallbacks(WorkerCallback):
    """Records every callback as a JSON event in ``job.args[0]``."""

    def before_run(self, partition_id: str, job: Job) -> Any:
        record(
            job.args[0], "before_run", id=job.id, tag=job.args[1], partition=partition_id,
            retry_count=job.retry_count,
        )
        return {"from": "before_run", "tag": job.args[1]}

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        record(
            job.args[0], "after_run", id=job.id, tag=job.args[1], partition=partition_id,
            result=result, state=state,
        )

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        record(
            job.args[0], "on_error", id=job.id, tag=job.args[1], partition=partition_id,
            kind=error[0], detail=str(error[1]), retry_count=job.retry_count, state=state,
            has_stacktrace=stacktrace is not None,
        )

    def on_cancel(self, partition_id: str, job: Job) -> None:
        record(job.args[0], "on_cancel", id=job.id, tag=job.args[1], partition=partition_id)

    def on_buried(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        record(
            job.args[0], "on_buried", id=job.id, tag=job.args[1], partition=partition_id,
            kind=error[0], retry_count=job.retry_count,
        )


class KeyedJob(Job):
    """args: [path, tag, seconds, queue_key | None, execution_key | None] ->
    "start", sleeps, "end"; its keys come from the args."""

    def queue_key(self, args: Any) -> Any:
        return args[3]

    def execution_key(self, args: Any) -> Any:
        return args[4]

    def perform(self, args: Any) -> Any:
        record(args[0], "start", tag=args[1])
        time.sleep(args[2])
        record(args[0], "end", tag=args[1])
        return args[1]


class SpawningJob(Job):
    """args: [path, tag, partition_id] -> asks Global whether it is cancelled,
    then enqueues a TimedJob tagged ``<tag>-child`` in the same partition."""

    def perform(self, args: Any) -> Any:
        from roger_actors import node

        cancelled = node.Global.is_cancelled(args[2], self.id)
        record(args[0], "spawning", tag=args[1], cancelled=cancelled)
        Job.enqueue(Job.create(TimedJob, [args[0], f"{args[1]}-child", 0]), args[2])
        return args[1]
