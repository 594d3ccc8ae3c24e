"""Job modules and worker callbacks of Roger's test suite, for ``tests/integration/roger``.

Each Roger test module defines its jobs inside itself (``Roger.Partition.
ConsumerTest.TestJob``); here each is a class nested in a namespace named
after that module (``ConsumerTest.TestJob``), registered on import under
``tests.integration.roger.jobs.ConsumerTest.TestJob``. The conftest imports this module
before any node starts, so every actor process of a node knows these classes.

Roger's jobs ``send`` a message to the test process; these append a JSON
event to the journal of the running test instead (jobs run in worker
processes, some callbacks in the Consumer): :func:`record`. The journal is
found through the environment variable :data:`JOURNAL_DIR_ENV` (set before the
node starts, so every forked actor has it), whose directory holds a file
``current`` naming the journal of the test now running. Job arguments stay
exactly Roger's (``Job.create(TestJob, "job_1")``, ``[2]``, ``1``...).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from roger_actors import Job, WorkerCallback

#: Environment variable naming the journal directory of the running node.
JOURNAL_DIR_ENV = "ROGER_PORT_JOURNAL_DIR"


def journal_path() -> Path:
    """The journal file of the test running now (``<dir>/current`` names it)."""
    directory = Path(os.environ[JOURNAL_DIR_ENV])
    return Path((directory / "current").read_text().strip())


def record(event: str, job: Job | None, **fields: Any) -> None:
    """Append one event to the current journal: its name, the job's id and
    args, the writer's pid and wall time, and ``fields``."""
    line: dict[str, Any] = {"event": event, "pid": os.getpid(), "t": time.time()}
    if job is not None:
        line.update(job=job.id, args=job.args, retry_count=job.retry_count)
    line.update(fields)
    with open(journal_path(), "a") as f:
        f.write(json.dumps(line, default=repr) + "\n")


class RecordingCallbacks(WorkerCallback):
    """Every callback, recorded with what Roger's test callbacks look at.

    ``before_run`` returns a fresh token (Roger's test returns a ref) and
    records it; ``after_run`` records its result and the state it got.
    ``on_error`` records the error's kind, the exception's type and message,
    and the stack trace as ``[filename, function]`` pairs (or None)."""

    def before_run(self, partition_id: str, job: Job) -> Any:
        state = f"ref-{uuid.uuid4().hex}"
        record("before_run", job, partition=partition_id, state=state)
        return state

    def after_run(self, partition_id: str, job: Job, result: Any, state: Any) -> None:
        record("after_run", job, partition=partition_id, result=result, state=state)

    def on_error(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        kind, detail = error
        frames = None
        if stacktrace is not None:
            frames = [[frame.filename, frame.name] for frame in stacktrace]
        record(
            "on_error", job, partition=partition_id, kind=kind,
            error_type=type(detail).__name__, message=str(detail),
            stacktrace_is_list=isinstance(stacktrace, list), stacktrace=frames, state=state,
        )

    def on_cancel(self, partition_id: str, job: Job) -> None:
        record("on_cancel", job, partition=partition_id)

    def on_buried(
        self, partition_id: str, job: Job, error: Any, stacktrace: Any, state: Any
    ) -> None:
        record("on_buried", job, partition=partition_id, kind=error[0])


# ------------------------------------------------------------------ test/roger/*


class ConsumerTest:
    """test/roger/consumer_test.exs"""

    class TestJob(Job):
        def perform(self, args: Any) -> Any:
            record("done", self)


class InfoTest:
    """test/roger/info_test.exs"""

    class SlowTestJob(Job):
        def perform(self, args: Any) -> Any:
            time.sleep(0.3)
            record("done", self)


class NodeInfoTest:
    """test/roger/node_info_test.exs"""

    class SlowTestJob(Job):
        def perform(self, args: Any) -> Any:
            record("start", self)
            time.sleep(0.2)
            record("done", self)


class QueueTest:
    """test/roger/queue_test.exs"""

    class TestJob(Job):
        def perform(self, args: Any) -> Any:
            time.sleep(0.2)
            record("done", self)


class JobTest:
    """test/roger/job_test.exs"""

    class SquareJob(Job):
        def perform(self, args: Any) -> Any:
            [num] = args
            return num * num

    class QueueKeyJob(Job):
        def perform(self, args: Any) -> Any:
            [num] = args
            return num * num

        def queue_key(self, args: Any) -> Any:
            [num] = args
            return f"num-{num}"

    class MyCustomJob:
        """Not a job (Roger's module without ``use Roger.Job``)."""


class WorkerTest:
    """test/roger/worker_test.exs"""

    class TestJob(Job):
        def perform(self, args: Any) -> Any:
            record("job_ok", self)


# ------------------------------------------------------------ test/roger/job/*


class CancelTest:
    """test/roger/job/cancel_test.exs"""

    class MyJob(Job):
        def perform(self, args: Any) -> Any:
            return None

    class MyCancellableJob(Job):
        def perform(self, args: Any) -> Any:
            record("job_running", self)
            time.sleep(0.2)


class EnqueueTest:
    """test/roger/job/enqueue_test.exs"""

    class MyCalculation(Job):
        def perform(self, args: Any) -> Any:
            [num] = args
            record("result", self, value=num * num)


class UniqueExecutionTest:
    """test/roger/job/unique_execution_test.exs"""

    class MyJob(Job):
        def perform(self, args: Any) -> Any:
            record("start", self, msg=args)
            time.sleep(0.1)
            record("stop", self, msg=args)
            time.sleep(0.1)

        def execution_key(self, args: Any) -> Any:
            return "a"


class UniqueQueueTest:
    """test/roger/job/unique_queue_test.exs"""

    class MyJob(Job):
        def queue_key(self, args: Any) -> Any:
            [msg] = args
            return f"key-{msg}"

        def perform(self, args: Any) -> Any:
            [msg] = args
            # Roger's job takes 10 ms, and its test's duplicate enqueues take
            # microseconds each (a GenServer call in the VM). Here each is a
            # Global request over RabbitMQ (a few ms on quorum queues), so the
            # job takes long enough for all of them to come while it is queued
            # or running.
            time.sleep(0.3)
            record("msg", self, msg=msg)


class WorkerTimeoutTest:
    """test/roger/job/worker_timeout_test.exs"""

    class MyLongJob(Job):
        max_execution_time = 1

        def perform(self, args: Any) -> Any:
            [ms] = args
            time.sleep(ms / 1000)
            record("job_done", self)


# ------------------------------------------------------- test/roger/consumer/*


class ReconnectionTest:
    """test/roger/consumer/reconnection_test.exs

    Roger's job sleeps 100 ms, and the test kills the connection 10 ms after
    the enqueue, in the same BEAM, so the kill lands while the job runs. A
    broker-side close here takes longer than 100 ms, so this job instead
    runs until the test creates ``<journal dir>/release-<job id>`` (10 s at
    most): the connection still dies while the job is in flight."""

    class MyJob(Job):
        def perform(self, args: Any) -> Any:
            record("running", self)
            release = Path(os.environ[JOURNAL_DIR_ENV]) / f"release-{self.id}"
            deadline = time.monotonic() + 10
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            record("reconnect_job_done", self)


class RetryTest:
    """test/roger/consumer/retry_test.exs"""

    class Retryable(Job):
        retryable = True

        def perform(self, args: Any) -> Any:
            raise RuntimeError("fail!")


# --------------------------------------------------------- test/roger/worker/*


class CallbacksTest:
    """test/roger/worker/callbacks_test.exs"""

    class TestJob(Job):
        def perform(self, args: Any) -> Any:
            return None

    class ErrorJob(Job):
        def perform(self, args: Any) -> Any:
            raise RuntimeError("foo")
