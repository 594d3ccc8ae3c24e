"""Celery on RabbitMQ: the pyamqp transport, a no-op task, a ``celery worker`` subprocess.

Client side (in the harness): ``task.delay(...)`` on the app from
:func:`bench.celery_app.make_app` (pyamqp, persistent messages, no publisher
confirms, no result backend).

Worker side: ``python -m celery -A bench.celery_app worker --pool POOL
--concurrency C -Q QUEUE --without-gossip --without-mingle --without-heartbeat``
in its own process group. The pool is ``prefork`` unless
``--opt celery_pool=threads|solo`` says otherwise. Why prefork: it is Celery's
default and its recommended pool for ordinary Python jobs, and like Roger's
design it runs jobs in separate processes (isolation, killable jobs, real
parallelism), so it is the like-for-like comparison; its cost is one
pipe round trip between the consumer process and a pool process per job.
``threads`` keeps jobs in the consumer's process (cheaper per job on a no-op,
GIL-bound for real work) and is there for reference. Prefetch is Celery's
default, ``worker_prefetch_multiplier (4) * concurrency``.
"""

from __future__ import annotations

import sys

from celery import Celery, Task

from bench.celery_app import TASK_NAME, make_app
from bench.common import BenchConfig, BenchError, PeerRunner

POOLS = ("prefork", "threads", "solo")


class CeleryRunner(PeerRunner):
    """Celery with the pyamqp transport and a CLI worker."""

    name = "celery"

    def __init__(self, config: BenchConfig) -> None:
        """Pick the pool from ``config.options['celery_pool']`` (default prefork)."""
        super().__init__(config)
        self.pool = config.options.get("celery_pool", "prefork")
        if self.pool not in POOLS:
            raise BenchError(f"celery_pool must be one of {', '.join(POOLS)}, not {self.pool!r}")
        concurrency = 1 if self.pool == "solo" else config.concurrency
        self.concurrency = concurrency
        self.notes.update(pool=self.pool, concurrency=concurrency, acks_late=True)
        self._app: Celery | None = None
        self._task: Task | None = None

    @property
    def app(self) -> Celery:
        """The harness's Celery app (after setup)."""
        if self._app is None:
            raise BenchError("celery client is not open")
        return self._app

    def _open_client(self) -> None:
        """Build the app; kombu connects on first publish."""
        self._app = make_app(self.queue, self.config.url)
        self._task = self._app.tasks[TASK_NAME]
        self.notes["prefetch"] = self.concurrency * int(self._app.conf.worker_prefetch_multiplier)

    def _declare(self) -> None:
        """Declare the exchange, queue and binding as kombu does."""
        with self.app.connection_for_write() as connection:
            self.app.amqp.queues[self.queue].bind(connection.default_channel).declare()

    def _publish(self, enqueued_at: float | None) -> None:
        """``task.delay(...)``: Celery's ordinary enqueue."""
        if self._task is None:
            raise BenchError("celery client is not open")
        if enqueued_at is None:
            self._task.delay()
        else:
            self._task.delay(enqueued_at)

    def _close_client(self) -> None:
        """Close the app's connection pools."""
        if self._app is not None:
            self._app.close()
        self._app = None
        self._task = None

    def _owned_exchanges(self) -> list[str]:
        """The direct exchange named after the queue."""
        return [self.queue]

    def _worker_argv(self) -> list[str]:
        """The ``celery worker`` CLI on this trial's queue."""
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.celery_app",
            "worker",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "-Q",
            self.queue,
            "-n",
            f"{self.queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
        ]
