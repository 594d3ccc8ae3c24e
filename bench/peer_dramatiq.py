"""Dramatiq on RabbitMQ: ``RabbitmqBroker``, a no-op actor, the ``dramatiq`` worker CLI.

Client side (in the harness): ``actor.send()`` on a ``RabbitmqBroker`` with
Dramatiq's defaults (pika ``BlockingConnection``, persistent messages, no
publisher confirms, default middleware).

Worker side: ``python -m dramatiq bench.dramatiq_app:setup_worker_broker
--processes P --threads T --queues Q`` in its own process group, with
``P * T = --concurrency``. ``P`` is Dramatiq's own default, one process per
CPU (2 here, so 2 x 5 for concurrency 10), unless ``--opt
dramatiq_processes=P`` says otherwise. One process of 10 threads drained
about 30% slower here: its threads share one GIL, so Dramatiq would be
held to one core while Celery's prefork pool uses both; the default layout is
the one Dramatiq users get. Why the CLI rather than a ``dramatiq.Worker``
inside the harness: the worker then shares no interpreter (no GIL, no CPU)
with the harness's publishing and polling, it is exactly how Dramatiq is
deployed, and it is started and stopped the same way as the Celery and aiormq
workers. Prefetch is Dramatiq's default, ``2 * threads`` per process.
"""

from __future__ import annotations

import os
import sys

# Dramatiq is imported here and in bench/dramatiq_app.py only, never outside bench/.
import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.common import BenchConfig, BenchError, PeerRunner
from bench.dramatiq_app import QUEUE_TYPE_ENV, declare_actor, make_broker


def dramatiq_processes(config: BenchConfig) -> int:
    """Worker processes for ``config.concurrency`` jobs at once.

    ``--opt dramatiq_processes=P`` if given, else Dramatiq's own default (one
    process per CPU), lowered to the largest divisor of the concurrency so that
    ``processes * threads`` is exactly the concurrency.
    """
    wanted = config.options.get("dramatiq_processes")
    limit = int(wanted) if wanted else os.cpu_count() or 1
    limit = max(1, min(limit, config.concurrency))
    return max(d for d in range(1, limit + 1) if config.concurrency % d == 0)


class DramatiqRunner(PeerRunner):
    """Dramatiq with its RabbitMQ broker and CLI worker."""

    name = "dramatiq"
    #: The type of the queues Dramatiq declares (its own: classic).
    queue_type = "classic"

    def __init__(self, config: BenchConfig) -> None:
        """Choose processes and threads so that their product is ``--concurrency``."""
        super().__init__(config)
        self.processes = dramatiq_processes(config)
        self.threads = config.concurrency // self.processes
        self.notes.update(
            processes=self.processes,
            threads=self.threads,
            prefetch_per_process=2 * self.threads,
        )
        self._broker: RabbitmqBroker | None = None
        self._actor: dramatiq.Actor[..., None] | None = None

    def _open_client(self) -> None:
        """Create the broker and register the actor (pika connects on first use)."""
        broker = make_broker(self.config.url, self.queue_type)
        self._broker = broker
        self._actor = declare_actor(broker, self.queue)

    def _declare(self) -> None:
        """Let Dramatiq declare its queue (with its delay and dead-letter queues)."""
        if self._broker is None:
            raise BenchError("dramatiq client is not open")
        self._broker.declare_queue(self.queue, ensure=True)

    def _publish(self, enqueued_at: float | None) -> None:
        """``actor.send(...)``: Dramatiq's ordinary enqueue."""
        if self._actor is None:
            raise BenchError("dramatiq client is not open")
        if enqueued_at is None:
            self._actor.send()
        else:
            self._actor.send(enqueued_at)

    def _close_client(self) -> None:
        """Close the broker's connections."""
        if self._broker is not None:
            self._broker.close()
        self._broker = None

    def _owned_queues(self) -> list[str]:
        """The work queue plus Dramatiq's ``.DQ`` (delay) and ``.XQ`` (dead-letter) queues."""
        return [self.queue, f"{self.queue}.DQ", f"{self.queue}.XQ"]

    def _worker_argv(self) -> list[str]:
        """The ``dramatiq`` CLI on this trial's queue."""
        return [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.dramatiq_app:setup_worker_broker",
            "--processes",
            str(self.processes),
            "--threads",
            str(self.threads),
            "--queues",
            self.queue,
            "--worker-shutdown-timeout",
            "10000",
        ]

    def worker_env(self) -> dict[str, str]:
        """The harness's worker environment plus the queue type."""
        env = super().worker_env()
        env[QUEUE_TYPE_ENV] = self.queue_type
        return env


class DramatiqQuorumRunner(DramatiqRunner):
    """Dramatiq as above, its work and delay queues quorum queues: the queue
    type roger-actors' work queues have, so that latencies compare like with
    like (a quorum queue's publish-to-delivery costs more than a classic's)."""

    name = "dramatiq_quorum"
    queue_type = "quorum"
