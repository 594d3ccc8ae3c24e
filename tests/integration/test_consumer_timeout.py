"""Long jobs and the broker's ``consumer_timeout`` (reliability issue, item 5.2).

RabbitMQ closes a consumer channel whose oldest unacked delivery is older
than ``consumer_timeout`` and requeues every unacked delivery of it. Here a
broker node of the test's own has ``consumer_timeout`` 5 s (and a channel
tick of 1 s, so that the broker checks every second instead of every
minute); the node's config says ``consumer_timeout = 5``. A delivery held
for half of it is handed over to a lease (``roger_actors/partition/lease.py``):
jobs longer than the timeout run once, are settled, and leave no lease queue;
cancellation and ``max_execution_time`` still work on them; a Consumer that
dies under one gives the job back through the lease copy's expiry.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp import commands as spec

import roger_actors as roger
from roger_actors import Queue
from roger_actors import node as roger_node
from roger_actors.partition.consumer import Status
from tests import rabbit_nodes
from tests.broker_jobs import GateJob, LimitedGateJob
from tests.partition_harness import NodeHarness, wait_for
from tests.procs import sigkill
from tests.rabbit_nodes import BrokerNode
from tests.roger_test_jobs2 import TimedJob

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not rabbit_nodes.available(), reason="no RabbitMQ to start here"),
]

#: The broker's consumer_timeout in this module, seconds.
TIMEOUT = 5


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerNode]:
    """A RabbitMQ node whose consumer_timeout is 5 s, checked every second."""
    node = BrokerNode.create(
        "roger-ct", extra_conf={"consumer_timeout": str(TIMEOUT * 1000)}
    )
    try:
        node.start()
        # Channels check the timeout on their tick (60 s by default); new
        # channels read this setting when they open.
        node.ctl("eval", "application:set_env(rabbit, channel_tick_interval, 1000).")
        yield node
    finally:
        node.remove()


@pytest.fixture
def hb(tmp_path: Path, broker: BrokerNode) -> Iterator[NodeHarness]:
    """A node harness whose node uses ``broker`` with ``consumer_timeout`` 5."""
    harness = NodeHarness(tmp_path)
    original = harness.settings

    def settings(**config: Any) -> dict[str, Any]:
        merged: dict[str, Any] = {
            "amqp": f"{broker.url()}?name={harness.connection_name}",
            "consumer_timeout": TIMEOUT,
            **config,
        }
        return original(**merged)

    harness.settings = settings  # type: ignore[method-assign]
    try:
        yield harness
    finally:
        try:
            roger.stop()
        except Exception:
            pass


def _queues(broker: BrokerNode) -> dict[str, tuple[int, int]]:
    """``{name: (ready, unacked)}`` of every queue of ``broker``."""
    out = broker.ctl(
        "list_queues", "--no-table-headers", "name", "messages_ready",
        "messages_unacknowledged",
    )
    found = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1].isdigit():
            found[parts[0]] = (int(parts[1]), int(parts[2]))
    return found


def _leases(broker: BrokerNode, pid: str) -> dict[str, tuple[int, int]]:
    return {n: c for n, c in _queues(broker).items() if n.startswith(pid) and ".lease." in n}


def _starts(h: NodeHarness) -> Counter[str]:
    return Counter(e["tag"] for e in h.events("start"))


def _drain(url: str, queue: str) -> list[bytes]:
    async def run() -> list[bytes]:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            got = []
            while True:
                message = await channel.basic_get(queue, no_ack=True)
                if isinstance(message.delivery, spec.Basic.GetEmpty):
                    return got
                got.append(bytes(message.body))
        finally:
            await connection.close()

    return asyncio.run(run())


def test_jobs_longer_than_consumer_timeout_run_once_and_are_acked(
    hb: NodeHarness, broker: BrokerNode
) -> None:
    """A 12 s job and six 1 s jobs that wait behind each other in the
    Consumer, with the broker's consumer_timeout at 5 s: each runs exactly
    once, every delivery is settled, and no lease queue is left."""
    hb.start()
    pid = hb.start_partition({"default": 2})
    hb.enqueue(TimedJob, pid, "long", 12)
    wait_for(lambda: "long" in hb.tags("start"), what="the long job started")
    shorts = {f"short-{i}" for i in range(6)}
    for tag in sorted(shorts):
        hb.enqueue(TimedJob, pid, tag, 1)

    hb.wait_tags("after_run", shorts | {"long"}, timeout=40)

    work = Queue.make_name(pid, "default")
    wait_for(lambda: _queues(broker).get(work) == (0, 0), what="every delivery settled")
    wait_for(lambda: not _leases(broker, pid), what="every lease queue deleted")
    assert _starts(hb) == Counter({tag: 1 for tag in shorts | {"long"}})
    assert _drain(broker.url(), Queue.invalid_name(pid, "default")) == []


def test_a_leased_job_can_still_be_cancelled_or_time_out(
    hb: NodeHarness, broker: BrokerNode, tmp_path: Path
) -> None:
    """Past the hand-over to a lease, ``cancel_job`` kills a running job
    (``on_cancel``) and ``max_execution_time`` (8 s) times one out: each ran
    once, and their lease queues are gone."""
    hb.start()
    pid = hb.start_partition({"default": 2})
    never = str(tmp_path / "never")
    cancelled = hb.enqueue(GateJob, pid, "cancelled", never)
    hb.enqueue(LimitedGateJob, pid, "timed-out", never)
    wait_for(lambda: hb.tags("start") == {"cancelled", "timed-out"}, what="both jobs started")
    wait_for(lambda: len(_leases(broker, pid)) == 2, what="both handed over to leases")

    roger.Global.cancel_job(pid, cancelled.id)

    hb.wait_tags("on_cancel", {"cancelled"})
    errors = hb.wait_events("on_error", 1)
    assert [(e["tag"], e["kind"]) for e in errors] == [("timed-out", "timeout")]
    work = Queue.make_name(pid, "default")
    wait_for(lambda: _queues(broker).get(work) == (0, 0), what="both deliveries settled")
    wait_for(lambda: not _leases(broker, pid), what="both lease queues deleted")
    assert _starts(hb) == Counter({"cancelled": 1, "timed-out": 1})


def test_a_leased_job_whose_consumer_dies_runs_again(
    hb: NodeHarness, broker: BrokerNode, tmp_path: Path
) -> None:
    """The Consumer is killed while its job is held by a lease: the lease copy
    expires back into the work queue and the job runs again, to its end
    (at-least-once)."""
    hb.start()
    pid = hb.start_partition({"default": 1})
    gate = tmp_path / "gate"
    hb.enqueue(GateJob, pid, "held", str(gate))
    hb.wait_tags("start", {"held"})
    wait_for(lambda: _leases(broker, pid), what="the job handed over to a lease")
    consumer: int = roger_node.current().consumer_call(pid, Status(), 10)["pid"]
    gate.touch()  # the next run ends at once
    sigkill(consumer)

    wait_for(lambda: _starts(hb)["held"] == 2, timeout=30, what="the job run again")
    hb.wait_tags("after_run", {"held"})
    work = Queue.make_name(pid, "default")
    wait_for(lambda: _queues(broker).get(work) == (0, 0), what="the delivery settled")
