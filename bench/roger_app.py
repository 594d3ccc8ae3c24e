"""One roger-actors node for the benchmark: ``python -m bench.roger_app``.

Consumes the partition whose work queue is ``$BENCH_QUEUE`` (named
``<partition>-default``) with ``max_workers = $BENCH_CONCURRENCY`` and a
worker pool of that size, on its own
Thespian admin port, until SIGTERM or SIGINT, then stops gracefully.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading

import bench.roger_jobs  # noqa: F401  (registers BenchJob before the node forks)
from roger_actors.node import start, stop

SUFFIX = "-default"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    """Start the node, wait for a signal, stop."""
    queue = os.environ["BENCH_QUEUE"]
    if not queue.endswith(SUFFIX):
        sys.exit(f"BENCH_QUEUE must end with {SUFFIX!r}: {queue!r}")
    partition = queue[: -len(SUFFIX)]
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "10"))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    start(
        {
            "amqp": os.environ.get("BENCH_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            "admin_port": free_port(),
            "partitions": {partition: {"default": concurrency}},
            "shutdown_timeout": 10,
            # As many worker processes as the peers run (--concurrency).
            "worker_pool_size": concurrency,
        }
    )
    try:
        done.wait()
    finally:
        stop()


if __name__ == "__main__":
    main()
