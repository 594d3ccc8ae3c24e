"""The no-op Roger job of the benchmark (registered when a node imports this module)."""

from __future__ import annotations

from typing import Any

from bench.jobsink import sink_from_env
from roger_actors import Job


class BenchJob(Job):
    """args: [] for a throughput job, [enqueued_at] for a latency job."""

    def perform(self, args: Any) -> Any:
        sink_from_env().record(args[0] if args else None)
        return None
