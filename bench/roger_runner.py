"""roger-actors itself: a producer enqueues, one node (``bench.roger_app``) consumes.

Client side: ``roger_actors.start_producer`` and ``Job.enqueue`` — CBOR
payload, persistent, with publisher confirms (the peers publish without
confirms: Roger's enqueue waits for the broker to have the job).

Worker side: ``python -m bench.roger_app``: a node with one partition whose
``default`` queue has ``max_workers = --concurrency`` worker processes; the
node hands workers batches sized by recent job durations, prefetch following.
"""

from __future__ import annotations

import os
import sys

import roger_actors as roger
from bench.common import BenchConfig, PeerRunner
from bench.roger_jobs import BenchJob
from roger_actors.node import application as node
from roger_actors.node import start_producer, stop
from roger_actors.partition.consumer_core import MAX_BATCH

SUFFIX = "-default"


class RogerRunner(PeerRunner):
    """roger-actors: producer in the harness, a node in its own process tree."""

    name = "roger"

    def __init__(self, config: BenchConfig) -> None:
        """The partition id is the trial's unique name; its queue adds ``-default``."""
        super().__init__(config)
        self.partition = self.queue
        self.queue = f"{self.partition}{SUFFIX}"
        self.notes.update(
            max_workers=config.concurrency,
            prefetch=f"adaptive, {2 * config.concurrency}-{(1 + MAX_BATCH) * config.concurrency}",
            publisher_confirms=True,
        )

    def _open_client(self) -> None:
        """A producer connection in this process."""
        start_producer({"amqp": self.config.url})

    def _declare(self) -> None:
        """Declare the work queue as a node would (the producer does it on first enqueue)."""
        node._producer_publisher().run("declare_work_queue", self.queue)

    def _publish(self, enqueued_at: float | None) -> None:
        """``Job.enqueue``: Roger's ordinary enqueue."""
        args = [] if enqueued_at is None else [enqueued_at]
        roger.Job.create(BenchJob, args).enqueue(self.partition)

    def _close_client(self) -> None:
        """Close the producer connection."""
        stop()

    def _owned_queues(self) -> list[str]:
        """The work queue and the queues a node declares beside it."""
        return [self.queue, f"{self.queue}.invalid", f"{self.queue}.buried"]

    def _worker_argv(self) -> list[str]:
        """The benchmark node."""
        os.environ["BENCH_CONCURRENCY"] = str(self.config.concurrency)
        return [sys.executable, "-m", "bench.roger_app", self.queue]


class RogerManyRunner(RogerRunner):
    """roger-actors enqueueing with ``Job.enqueue_many`` (pipelined confirms),
    in calls of ``--option enqueue_batch=N`` jobs (default 1,000); the rest
    (node, drain, latency with single ``Job.enqueue``) as :class:`RogerRunner`."""

    name = "roger_many"

    def __init__(self, config: BenchConfig) -> None:
        super().__init__(config)
        self.batch = int(config.options.get("enqueue_batch", "1000"))
        if self.batch < 1:
            raise ValueError(f"enqueue_batch must be at least 1, got {self.batch}")
        self.notes["enqueue"] = f"Job.enqueue_many, {self.batch} jobs per call"

    def _publish_throughput_jobs(self, n: int) -> None:
        """``Job.enqueue_many`` in calls of ``enqueue_batch`` jobs."""
        left = n
        while left > 0:
            count = min(self.batch, left)
            jobs = [roger.Job.create(BenchJob, []) for _ in range(count)]
            roger.Job.enqueue_many(jobs, self.partition)
            left -= count
