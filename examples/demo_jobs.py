"""Job classes and worker callbacks of the job-processing demo (``scripts/demo``).

Every job and callback appends one JSON line to the journal file named by the
``ROGER_DEMO_JOURNAL`` environment variable (set by the demo before the node
starts, so that the worker processes inherit it). The demo reads the journal
to check that each step did what it says.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import roger_actors as roger

JOURNAL_ENV = "ROGER_DEMO_JOURNAL"


def record(event: str, job: roger.Job, partition_id: str | None = None, **fields: Any) -> None:
    """Append ``event`` about ``job`` to the journal (one ``write`` with
    ``O_APPEND``: lines of several processes never interleave)."""
    path = os.environ.get(JOURNAL_ENV)
    if not path:
        return
    entry = {
        "event": event,
        "job": job.id,
        "type": type(job).__name__,
        "partition": partition_id,
        "retry_count": job.retry_count,
        "t": time.time(),
        "os_pid": os.getpid(),
        **fields,
    }
    line = (json.dumps(entry, default=repr) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_journal(path: str) -> list[dict[str, Any]]:
    """Every event written so far, in order."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.endswith("\n")]
    except FileNotFoundError:
        return []


class Square(roger.Job):
    """Computes ``args[0] ** 2`` after ``args[1]`` seconds of "work"."""

    def perform(self, args: Any) -> int:
        time.sleep(args[1])
        return int(args[0]) ** 2


class Report(roger.Job):
    """A unique job: at most one report per account queued or running."""

    def queue_key(self, args: Any) -> str:
        return f"report-{args[0]}"

    def perform(self, args: Any) -> None:
        time.sleep(args[1])


class Transfer(roger.Job):
    """A serialised job: two transfers of one account never run at once."""

    def execution_key(self, args: Any) -> str:
        return f"account-{args[0]}"

    def perform(self, args: Any) -> None:
        record("transfer_start", self)
        time.sleep(args[1])
        record("transfer_end", self)


class Export(roger.Job):
    """A long job (``args[0]`` seconds), to be cancelled while it runs."""

    def perform(self, args: Any) -> None:
        record("export_start", self)
        deadline = time.monotonic() + args[0]
        while time.monotonic() < deadline:
            time.sleep(0.05)
        record("export_end", self)


class Flaky(roger.Job):
    """Fails every time: retried at each retry level, then buried."""

    retryable = True

    def perform(self, args: Any) -> None:
        raise RuntimeError(f"upstream {args[0]} unavailable")


class Nightly(roger.Job):
    """Runs on the partition's ``reports`` queue."""

    def queue_type(self, args: Any = None) -> str:
        return "reports"

    def perform(self, args: Any) -> None:
        record("nightly_run", self)


class DemoCallbacks(roger.WorkerCallback):
    """Journals every outcome (thread-safe: each record is one write)."""

    def after_run(self, partition_id: str, job: roger.Job, result: Any, state: Any) -> None:
        record("after_run", job, partition_id, result=result)

    def on_error(self, partition_id: str, job: roger.Job, error: Any, stacktrace: Any,
                 state: Any) -> None:
        record("on_error", job, partition_id, kind=error[0], detail=repr(error[1]))

    def on_buried(self, partition_id: str, job: roger.Job, error: Any, stacktrace: Any,
                  state: Any) -> None:
        record("on_buried", job, partition_id, kind=error[0], detail=repr(error[1]))

    def on_cancel(self, partition_id: str, job: roger.Job) -> None:
        record("on_cancel", job, partition_id)
