"""What a worker slot changing hands between partitions costs.

    python -m bench.pool_handover
    python -m bench.pool_handover --jobs 2000 --seconds 0.005 --json out.json

A node (in this process, the light base) with ``worker_pool_size`` 1 and two
partitions, each one queue of ``max_workers`` 1, each given ``--jobs`` jobs
of ``--seconds``. Both want the one slot, so it changes hands every
``QUANTUM_SECONDS`` (``roger_actors/partition/worker_slots.py``): the
holder's worker is stopped when its batch ends and a worker process is
started for the other partition. A worker never serves two partitions, so
each change of hands is a stop and a start.

Every job appends ``partition pid time`` to a file when it ends. Printed:
the number of changes of hands; the gap between consecutive job ends of one
worker (the steady pace) and across a change of hands (p50, p90, max, and
when in the run the longest began); what
a change costs over the steady pace; and the share of the run lost to
changes of hands.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import check_loopback_url, percentile
from bench.partitions import DEFAULT_URL, delete_queues


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Run the two partitions to the end of their jobs; the figures."""
    import roger_actors as roger
    from bench.roger_jobs import StampJob
    from roger_actors.node import start, stop
    from roger_actors.partition.worker_slots import QUANTUM_SECONDS

    tag = uuid.uuid4().hex[:8]
    first, second = f"bh{tag}-a", f"bh{tag}-b"
    fd, name = tempfile.mkstemp(prefix="roger-handover-")
    os.close(fd)
    path = Path(name)
    start(
        {
            "amqp": args.url,
            "partitions": {first: {"default": 1}, second: {"default": 1}},
            "worker_pool_size": 1,
            "shutdown_timeout": 10,
        }
    )
    try:
        for partition in (first, second):
            jobs = [
                roger.Job.create(StampJob, [str(path), partition, args.seconds])
                for _ in range(args.jobs)
            ]
            roger.Job.enqueue_many(jobs, partition)
        deadline = time.monotonic() + 60 + 4 * args.jobs * args.seconds
        while len(path.read_text().splitlines()) < 2 * args.jobs:
            if time.monotonic() > deadline:
                raise RuntimeError("the jobs did not all run in time")
            time.sleep(0.2)  # the poll's pace
    finally:
        stop()
        delete_queues(args.url, f"bh{tag}-")
    rows = [line.split() for line in path.read_text().splitlines()]
    path.unlink()
    ends = sorted((float(t), partition, pid) for partition, pid, t in rows)
    steady: list[float] = []
    handover: list[float] = []
    longest_at = 0.0
    for (t0, p0, w0), (t1, p1, w1) in itertools.pairwise(ends):
        gap = 1000 * (t1 - t0)
        if (p0, w0) == (p1, w1):
            steady.append(gap)
            continue
        if not handover or gap > max(handover):
            longest_at = t0 - ends[0][0]
        handover.append(gap)
    pace = percentile(steady, 50)
    total_ms = 1000 * (ends[-1][0] - ends[0][0])
    return {
        "jobs": 2 * args.jobs,
        "job_ms": 1000 * args.seconds,
        "quantum_s": QUANTUM_SECONDS,
        "run_s": round(total_ms / 1000, 1),
        "changes_of_hands": len(handover),
        "steady_gap_p50_ms": round(pace, 2),
        "handover_gap_p50_ms": round(percentile(handover, 50), 2) if handover else None,
        "handover_gap_p90_ms": round(percentile(handover, 90), 2) if handover else None,
        "handover_gap_max_ms": round(max(handover), 2) if handover else None,
        "handover_gap_max_at_s": round(longest_at, 1),
        "cost_per_change_ms": round(percentile(handover, 50) - pace, 2) if handover else None,
        "share_of_run_lost": round(sum(h - pace for h in handover) / total_ms, 4),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.pool_handover", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per partition (2000)")
    parser.add_argument("--seconds", type=float, default=0.005, help="each job's sleep (0.005)")
    parser.add_argument("--url", default=os.environ.get("ROGER_BENCH_URL", DEFAULT_URL))
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args(argv)
    check_loopback_url(args.url)
    if args.jobs < 2 or args.seconds < 0:
        parser.error("--jobs must be >= 2 and --seconds >= 0")
    row = measure(args)
    for key, value in row.items():
        print(f"{key:>22}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
