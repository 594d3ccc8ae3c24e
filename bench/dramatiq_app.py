"""Dramatiq's side of the benchmark: the no-op actor and the broker its worker uses.

The harness enqueues through :func:`make_broker` and :func:`declare_actor`;
the worker is the ``dramatiq`` command line, pointed at
:func:`setup_worker_broker`, which reads the queue and URL from the
environment the harness sets (``BENCH_QUEUE``, ``BENCH_URL``). Importing this
module connects nothing and registers nothing.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker

from bench.jobsink import record_from_env

ACTOR_NAME = "bench_noop"


def noop(enqueued_at: float | None = None) -> None:
    """The benchmark job: record that it ran (see :mod:`bench.jobsink`)."""
    record_from_env(enqueued_at)


#: ``BENCH_QUEUE_TYPE=quorum`` in the worker's environment: the ``dramatiq_quorum`` runner.
QUEUE_TYPE_ENV = "BENCH_QUEUE_TYPE"


class QuorumRabbitmqBroker(RabbitmqBroker):
    """Dramatiq's RabbitMQ broker declaring its work and delay queues as
    quorum queues (``x-queue-type: quorum``), as roger-actors declares its
    work queues; everything else is Dramatiq's default."""

    def _build_queue_arguments(self, queue_name: str) -> dict[str, object]:
        arguments: dict[str, object] = super()._build_queue_arguments(queue_name)  # type: ignore[no-untyped-call]
        arguments["x-queue-type"] = "quorum"
        return arguments


def make_broker(url: str, queue_type: str = "classic") -> RabbitmqBroker:
    """A RabbitMQ broker with Dramatiq's default middleware and settings, on
    classic queues (Dramatiq's own) or, ``queue_type="quorum"``, on quorum ones."""
    if queue_type == "quorum":
        return QuorumRabbitmqBroker(url=url)
    if queue_type != "classic":
        raise ValueError(f"queue_type must be 'classic' or 'quorum', not {queue_type!r}")
    return RabbitmqBroker(url=url)


def declare_actor(broker: RabbitmqBroker, queue: str) -> dramatiq.Actor[..., None]:
    """Register the no-op actor on ``broker`` for ``queue`` (default actor options)."""
    decorator = dramatiq.actor(actor_name=ACTOR_NAME, queue_name=queue, broker=broker)
    return decorator(noop)


def setup_worker_broker() -> None:
    """Called by ``dramatiq bench.dramatiq_app:setup_worker_broker`` in each worker process."""
    broker = make_broker(os.environ["BENCH_URL"], os.environ.get(QUEUE_TYPE_ENV, "classic"))
    dramatiq.set_broker(broker)
    declare_actor(broker, os.environ["BENCH_QUEUE"])
