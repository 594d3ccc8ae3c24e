"""The Roger jobs of the benchmarks (registered when a node imports this module)."""

from __future__ import annotations

import os
import time
from typing import Any

from bench.jobsink import sink_from_env
from roger_actors import Job


class BenchJob(Job):
    """args: [] for a throughput job, [enqueued_at] for a latency job."""

    def perform(self, args: Any) -> Any:
        sink_from_env().record(args[0] if args else None)
        return None


class StampJob(Job):
    """args: [path, tag, seconds]: sleeps ``seconds``, then appends ``tag pid
    time`` to ``path`` (``O_APPEND``: one write per job, from any process)."""

    def perform(self, args: Any) -> Any:
        time.sleep(args[2])
        fd = os.open(args[0], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{args[1]} {os.getpid()} {time.time():.6f}\n".encode())
        finally:
            os.close(fd)
        return None
