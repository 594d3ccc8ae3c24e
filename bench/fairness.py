"""Fairness between tenants: how long a quiet tenant's jobs wait while a
loud one has a huge backlog.

Run::

    python -m bench.fairness
    python -m bench.fairness --backlog 100000 --rate 50 --samples 300 --max-workers 10
    ROGER_ACTOR_SYSTEM_BASE=multiprocTCPBase python -m bench.fairness

Node runtime v2's fairness target: while tenant A has 100,000 no-op jobs
queued, tenant B's jobs, arriving at 50/s, wait at most 50 ms at p99 before
they start.

1. ``--backlog`` no-op jobs are enqueued into partition A
   (``Job.enqueue_many``), before any node runs.
2. A node (``python -m bench.fairness node``, in a session of its own)
   starts partitions A and B, each with one queue of ``--max-workers``, and
   begins to drain A.
3. Once A's queue is seen to shrink, one job is enqueued into B and waited
   for (it starts B's worker, on demand as in Roger; it is not counted).
   Then ``--samples`` jobs are enqueued into B at ``--rate`` per second
   (``Job.enqueue``, each carrying the time it was enqueued at); each
   records, when it starts, how long it waited.

Printed: B's waits (p50, p99, max), how many of B's jobs were enqueued
while A still had jobs queued (the figure only counts when all were), and
A's drain rate meanwhile. This is a benchmark, never a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import AsyncBridge, BrokerProbe, check_loopback_url, percentile
from bench.jobsink import COUNTER_ENV, LATENCY_ENV
from bench.partitions import DEFAULT_URL, delete_queues, end_node_session
from roger_actors.config import Config, default_worker_pool_size

READY = "ready"


def run_node(loud: str, quiet: str, max_workers: int, url: str, pool_size: int) -> None:
    """The node: partitions ``loud`` and ``quiet``, one queue each, and a
    worker pool of ``pool_size``; idle until killed."""
    import bench.roger_jobs  # noqa: F401  (the job class, before the node forks)
    from roger_actors.node import start

    start(
        {
            "amqp": url,
            "partitions": {loud: {"default": max_workers}, quiet: {"default": max_workers}},
            "shutdown_timeout": 10,
            "worker_pool_size": pool_size,
        }
    )
    print(READY, flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """One run; its figures."""
    import roger_actors as roger
    from bench.roger_jobs import BenchJob
    from roger_actors.node import start_producer, stop

    tag = uuid.uuid4().hex[:8]
    loud, quiet = f"bf{tag}-a", f"bf{tag}-b"
    workdir = Path(tempfile.mkdtemp(prefix="bench-fairness-"))
    counter, latency = workdir / "counter", workdir / "latency"
    env = {**os.environ, COUNTER_ENV: str(counter), LATENCY_ENV: str(latency)}
    node: subprocess.Popen[str] | None = None
    bridge = AsyncBridge()
    probe = BrokerProbe(bridge, args.url)  # A's queue depth, by passive declare
    probe.connect()
    start_producer({"amqp": args.url})
    try:
        began = time.monotonic()
        left = args.backlog
        while left > 0:
            count = min(1000, left)
            roger.Job.enqueue_many([roger.Job.create(BenchJob, []) for _ in range(count)], loud)
            left -= count
        enqueue_s = time.monotonic() - began
        argv = [sys.executable, "-m", "bench.fairness", "node", loud, quiet]
        argv += [str(args.max_workers), args.url, str(args.pool_size)]
        node = subprocess.Popen(
            argv, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True
        )
        assert node.stdout is not None
        if node.stdout.readline().strip() != READY:
            raise RuntimeError("the node did not start")
        deadline = time.monotonic() + 120
        while probe.check(f"{loud}-default").ready >= args.backlog:
            if time.monotonic() > deadline:
                raise RuntimeError("partition A never started to drain")
            time.sleep(0.05)  # the poll's pace
        # B's first job starts B's worker (on demand, as Roger does): it is
        # waited for and not counted.
        roger.Job.create(BenchJob, [time.time()]).enqueue(quiet)
        while not (latency.exists() and latency.read_text().strip()):
            if time.monotonic() > deadline:
                raise RuntimeError("partition B's first job never ran")
            time.sleep(0.02)  # the poll's pace
        warm = len(latency.read_text().split())
        done_before = counter.stat().st_size if counter.exists() else 0
        phase_began = time.monotonic()
        during_backlog = 0
        backlog_now = args.backlog
        for n in range(args.samples):
            due = phase_began + n / args.rate
            time.sleep(max(0.0, due - time.monotonic()))  # the arrival rate itself
            roger.Job.create(BenchJob, [time.time()]).enqueue(quiet)
            if n % 10 == 0:
                backlog_now = probe.check(f"{loud}-default").ready
            if backlog_now > 0:
                during_backlog += 1
        phase_s = time.monotonic() - phase_began
        done_during = (counter.stat().st_size if counter.exists() else 0) - done_before
        deadline = time.monotonic() + 60
        waits: list[float] = []
        while len(waits) < args.samples and time.monotonic() < deadline:
            waits = [float(x) for x in latency.read_text().split()[warm:]]
            time.sleep(0.1)  # the poll's pace
        if len(waits) < args.samples:
            raise RuntimeError(f"only {len(waits)} of {args.samples} of B's jobs ran")
        ms = [1000 * w for w in waits]
        return {
            "backlog": args.backlog,
            "max_workers": args.max_workers,
            "worker_pool_size": args.pool_size,
            "base": os.environ.get("ROGER_ACTOR_SYSTEM_BASE") or Config().actor_system_base,
            "enqueue_backlog_s": round(enqueue_s, 1),
            "b_samples": len(ms),
            "b_enqueued_during_a_backlog": during_backlog,
            "b_wait_p50_ms": round(percentile(ms, 50), 2),
            "b_wait_p99_ms": round(percentile(ms, 99), 2),
            "b_wait_max_ms": round(max(ms), 2),
            "a_drain_per_s": round(done_during / phase_s),
        }
    finally:
        stop()
        probe.close()
        bridge.close()
        if node is not None:
            end_node_session(node)
        delete_queues(args.url, f"bf{tag}-")
        for path in (counter, latency):
            path.unlink(missing_ok=True)
        workdir.rmdir()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``node`` first, be its node); print the figures."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "node":
        loud, quiet, max_workers, url, pool_size = argv[1:6]
        run_node(loud, quiet, int(max_workers), url, int(pool_size))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--backlog", type=int, default=100_000, help="A's queued jobs (100000)")
    parser.add_argument("--rate", type=float, default=50.0, help="B's jobs per second (50)")
    parser.add_argument("--samples", type=int, default=300, help="B's jobs (300)")
    parser.add_argument("--max-workers", type=int, default=10, help="each queue's (10)")
    parser.add_argument(
        "--pool-size",
        type=int,
        default=default_worker_pool_size(),
        help=f"the node's worker_pool_size (the default here: {default_worker_pool_size()})",
    )
    parser.add_argument("--url", default=os.environ.get("ROGER_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    check_loopback_url(args.url)
    if min(args.backlog, args.samples, args.max_workers, args.pool_size) < 1 or args.rate <= 0:
        parser.error(
            "--backlog, --samples, --max-workers, --pool-size must be >= 1 and --rate > 0"
        )
    row = measure(args)
    for key, value in row.items():
        print(f"{key:>28}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(row, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
