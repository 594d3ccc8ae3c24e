"""Celery's side of the benchmark: the app, its no-op task, and the worker's module.

``make_app(queue, url)`` builds an app on the pyamqp transport whose only
queue is ``queue`` and whose only task is the no-op ``bench.noop``. The module
attribute ``app`` is the one the worker CLI loads
(``celery -A bench.celery_app worker``); it is built on first access from
``BENCH_QUEUE`` and ``BENCH_URL``, which the harness sets for the worker.
Building an app connects nothing.

Settings that differ from Celery's defaults, and why:

- no result backend, ``task_ignore_result``: the brief; no peer stores results.
- ``task_acks_late``: ack after the task ran, as Dramatiq, the aiormq loop and
  Roger do (Celery's default acks *before* running, which is cheaper and
  at-most-once).
- ``worker_enable_remote_control`` off, and the worker is started without
  gossip, mingle and heartbeat: no per-worker pidbox queue or broadcast
  traffic on the shared broker; none of it is on the job path.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.common import DEFAULT_URL
from bench.jobsink import record_from_env

TASK_NAME = "bench.noop"


def noop(enqueued_at: float | None = None) -> None:
    """The benchmark job: record that it ran (see :mod:`bench.jobsink`)."""
    record_from_env(enqueued_at)


def pyamqp_url(amqp_url: str) -> str:
    """The same broker address with Celery's ``pyamqp://`` scheme."""
    scheme, sep, rest = amqp_url.partition("://")
    if not sep or scheme not in ("amqp", "pyamqp"):
        raise ValueError(f"not an amqp URL: {amqp_url!r}")
    # kombu reads the path as the vhost; "/" alone means the default vhost.
    return f"pyamqp://{rest}"


def make_app(queue: str, url: str) -> Celery:
    """A Celery app whose default (and only) queue is ``queue``, with the no-op task.

    Celery derives the queue from the defaults: durable, bound to a direct
    exchange of the same name with the same routing key.
    """
    app = Celery("roger_bench", broker=pyamqp_url(url), set_as_current=False)
    app.conf.update(
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_exchange_type="direct",
        task_default_routing_key=queue,
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    # shared=False: register on this app only, not on every app made later.
    app.task(name=TASK_NAME, shared=False)(noop)
    return app




def __getattr__(name: str) -> Celery:
    """Build the worker CLI's ``app`` on first access, from ``BENCH_QUEUE`` and ``BENCH_URL``.

    Lazy so that the harness, which builds its own app per trial, never makes
    this one.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    worker_app = make_app(os.environ["BENCH_QUEUE"], os.environ.get("BENCH_URL", DEFAULT_URL))
    globals()["app"] = worker_app
    return worker_app
