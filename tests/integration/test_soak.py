"""The chaos soak's short version (issue 11, item 3): no job is lost.

``bench/soak.py --short`` runs a real ``roger-actors node`` under a restart
loop, against a RabbitMQ node of its own, with a few thousand retryable jobs
over six partitions, a SIGKILL of a random node process every half second, a
broker-side drop of every connection and a broker restart. It accounts by
job id and exits 1 when a job never ran. The long soak (``bench/README.md``)
is the same program with larger numbers. Run this one with
``scripts/test tests/integration/test_soak.py``.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from bench.soak import pick_victim
from tests.cluster_harness import ROOT
from tests.rabbit_nodes import available

pytestmark = [
    pytest.mark.timeout(400),
    pytest.mark.skipif(not available(), reason="needs rabbitmq-server to start a broker node"),
]


def test_the_short_chaos_soak_loses_no_job() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--short", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=380,
    )
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    report = json.loads(lines[-1])
    summary = "\n".join(lines[:-1]) + "\n" + done.stderr[-2000:]
    assert report["lost"] == 0, summary
    assert done.returncode == 0, summary
    # The faults happened while jobs ran.
    assert report["kills"] >= 5, summary
    assert report["connection_drops"] == 1, summary
    assert report["broker_restarts"] == 1, summary
    assert report["left_in_queues"] == 0, summary


def test_the_soak_kills_the_whole_node_only_at_its_share_of_the_kills() -> None:
    procs = {1: "node", 2: "admin", 3: "actor", 4: "actor"}
    rng = random.Random(7)
    victims = [pick_victim(procs, rng, 0.1) for _ in range(2000)]
    whole = sum(1 for v in victims if v in (1, 2))
    assert 100 < whole < 300  # about 10% of 2000
    assert {v for v in victims if v not in (1, 2)} == {3, 4}
    # A node just started has no actors yet: it is not killed again at once.
    fresh = {1: "node"}
    assert pick_victim(fresh, random.Random(1), 0.0) is None
    assert pick_victim(fresh, random.Random(1), 1.0) == 1
