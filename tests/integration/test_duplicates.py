"""A fault redelivers what was in flight, and only what was running runs twice (issue 11, item 4).

When the broker connection drops, every unacked delivery goes back to the
queue. Jobs a worker holds in its batch and has not started yet would run
twice (once from the batch, once redelivered): the Consumer has the worker
give them back instead. One real node, RabbitMQ, a real connection drop.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import roger_actors as roger
from roger_actors.node import current
from roger_actors.queue import Queue
from supervision import which_children
from tests.partition_harness import NodeHarness, close_connections_named, wait_for
from tests.roger_jobs import RecordJob
from tests.roger_test_jobs_worker import GateJob

#: Jobs queued behind the gated one in the same batch.
BEHIND = 20


def _runs(path: Path) -> Counter[str]:
    """How many times each RecordJob tag ran (its lines ``ran <tag> <pid>``;
    the harness's callbacks write JSON lines to the same file)."""
    if not path.exists():
        return Counter()
    lines = path.read_text().splitlines()
    return Counter(line.split()[1] for line in lines if line.startswith("ran "))


def _messages(queue: str) -> int | None:
    """Messages in ``queue``, ready and unacked (the broker's ``messages``)."""
    rows = subprocess.run(
        ["rabbitmqctl", "-q", "--no-table-headers", "list_queues", "name", "messages"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for row in rows.splitlines():
        name, _, count = row.partition("\t")
        if name == queue:
            return int(count)
    return None


def _worker_count(h: NodeHarness, pid: str) -> int | None:
    workers = h.partition_child(pid, "jobs", "workers")
    if workers is None:
        return None
    return len(which_children(workers, 5.0, system=current().app.system))


def test_jobs_of_a_batch_not_started_when_the_connection_drops_run_once(
    h: NodeHarness, tmp_path: Path
) -> None:
    """A worker's batch is a gated job followed by 20 quick ones. The
    connection drops while the gated job runs: the 20 go back to the queue
    unstarted and each runs exactly once (the gated job, which was running,
    runs again: at-least-once)."""
    h.start()
    pid = h.start_partition({"default": 1})
    runs = tmp_path / "runs"

    def record(tag: str) -> None:
        roger.Job.enqueue(roger.Job.create(RecordJob, [str(runs), tag]), pid)

    # The queue learns that its jobs are quick, so its batches get large.
    for i in range(40):
        record(f"warm{i}")
    wait_for(lambda: len(_runs(runs)) == 40, what="the warm-up jobs ran")
    # With no worker left (an idle one stops), the next jobs wait in the
    # Consumer's backlog while a worker starts, and go to it as one batch.
    wait_for(lambda: _worker_count(h, pid) == 0, timeout=30, what="the idle worker stopped")
    roger.Job.enqueue(roger.Job.create(GateJob, [str(tmp_path), "gated"]), pid)
    for i in range(BEHIND):
        record(f"behind{i}")
    wait_for(lambda: (tmp_path / "gated.started").exists(), what="the gated job started")
    assert not any(tag.startswith("behind") for tag in _runs(runs)), "not one batch"

    assert close_connections_named(h.connection_name) >= 1
    (tmp_path / "gated.gate").touch()
    behind = {f"behind{i}" for i in range(BEHIND)}
    wait_for(lambda: behind <= set(_runs(runs)), what="every job behind the gated one ran")
    queue = Queue.make_name(pid, "default")
    wait_for(lambda: _messages(queue) == 0, what="the queue empty, nothing unacked")

    ran = _runs(runs)
    twice = sorted(tag for tag in behind if ran[tag] > 1)
    assert not twice, f"jobs not started when the connection dropped ran twice: {twice}"
