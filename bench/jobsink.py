"""The body of every benchmark job: record one completion where the harness can see it.

Workers run in processes unrelated to the harness (a Celery or Dramatiq worker
started from its own command line), so a shared-memory counter cannot reach
them. Each job instead appends to a file opened with ``O_APPEND``: appends from
many processes never overwrite each other, and one ``write`` of a few bytes
costs about a microsecond, which is noise next to any job framework.

- A throughput job (no timestamp) appends one byte to the *counter* file: the
  harness reads the file size as the number of jobs run.
- A latency job carries the wall-clock time it was enqueued at and appends one
  line with ``time.time() - enqueued_at`` (seconds) to the *latency* file.

This module imports nothing beyond the standard library so that it costs the
same in every worker.
"""

from __future__ import annotations

import os
import time

COUNTER_ENV = "BENCH_COUNTER_FILE"
LATENCY_ENV = "BENCH_LATENCY_FILE"

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


class JobSink:
    """Appends job completions to the counter and latency files."""

    def __init__(self, counter_path: str, latency_path: str) -> None:
        """Remember the two paths; files are opened on first use in each process."""
        self.counter_path = counter_path
        self.latency_path = latency_path
        self._counter_fd: int | None = None
        self._latency_fd: int | None = None

    def record(self, enqueued_at: float | None) -> None:
        """Record one job: a byte on the counter, or a latency line if timestamped."""
        if enqueued_at is None:
            if self._counter_fd is None:
                self._counter_fd = os.open(self.counter_path, _FLAGS, 0o600)
            os.write(self._counter_fd, b".")
            return
        delay = time.time() - enqueued_at
        if self._latency_fd is None:
            self._latency_fd = os.open(self.latency_path, _FLAGS, 0o600)
        os.write(self._latency_fd, f"{delay:.9f}\n".encode())


_from_env: JobSink | None = None


def sink_from_env() -> JobSink:
    """Return the process's sink, configured from ``BENCH_COUNTER_FILE``/``BENCH_LATENCY_FILE``."""
    global _from_env
    if _from_env is None:
        _from_env = JobSink(os.environ[COUNTER_ENV], os.environ[LATENCY_ENV])
    return _from_env


def record_from_env(enqueued_at: float | None) -> None:
    """Record one job through the sink named by the environment (the worker-side no-op)."""
    sink_from_env().record(enqueued_at)
