"""Poison messages and the quorum queue delivery limit (reliability issue, item 5.1).

A work queue is a quorum queue with ``x-delivery-limit`` (config key
``delivery_limit``) and ``<queue>.invalid`` as its dead-letter target: a
message returned more often lands there with the broker's ``x-death``. The
Consumer itself sets aside, in ``.invalid`` with ``x-roger-invalid``, a job
delivered ``delivery_limit`` times without an outcome, also on a queue that
exists with other arguments. Returns the Consumer makes on purpose (a paused
queue's deliveries) are republished, not requeued: they never count toward
the limit. One real node, the shared RabbitMQ.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiormq
import pytest
from pamqp import commands as spec

import roger_actors as roger
from roger_actors import Queue
from tests.broker_jobs import GateJob
from tests.partition_harness import (
    BROKER,
    NodeHarness,
    counts,
    drain,
    holds_for,
    wait_for,
)
from tests.roger_test_jobs2 import TimedJob

pytestmark = pytest.mark.timeout(120)


async def _on_channel(action: Any) -> Any:
    connection = await aiormq.connect(BROKER + "?name=roger-test-broker-limits")
    try:
        return await action(await connection.channel())
    finally:
        await connection.close()


def _declare(queue: str, arguments: dict[str, Any]) -> None:
    """Declare ``queue`` durable with ``arguments`` (as an older version or
    another tool would have)."""

    async def action(channel: Any) -> None:
        await channel.queue_declare(queue, durable=True, arguments=arguments)

    asyncio.run(_on_channel(action))


def _return_until_gone(queue: str, most: int) -> list[Any]:
    """basic.get and requeue (basic.nack) the one message of ``queue`` until
    it is gone, at most ``most`` times; the ``x-delivery-count`` of each get."""

    async def action(channel: Any) -> list[Any]:
        seen = []
        for _ in range(most):
            message = await channel.basic_get(queue, no_ack=False)
            if isinstance(message.delivery, spec.Basic.GetEmpty):
                break
            seen.append((message.header.properties.headers or {}).get("x-delivery-count"))
            await channel.basic_nack(message.delivery.delivery_tag, requeue=True)
        return seen

    result: list[Any] = asyncio.run(_on_channel(action))
    return result


def _ready(queue: str) -> int | None:
    found = counts(queue)
    return None if found is None else found[0]


def test_a_work_queue_dead_letters_past_its_delivery_limit_to_invalid(h: NodeHarness) -> None:
    """A message returned more than ``delivery_limit`` times leaves the work
    queue for ``<queue>.invalid``, body unchanged, with the broker's reason."""
    h.start(delivery_limit=2)
    pid = h.start_partition({"default": 0})  # declared, not consumed
    work = Queue.make_name(pid, "default")
    job = h.enqueue(TimedJob, pid, "poison", 0)
    wait_for(lambda: counts(work) == (1, 0), what="the job queued")

    seen = _return_until_gone(work, 10)

    assert seen == [0, 1, 2]  # three deliveries, then dead-lettered
    invalid = wait_for(lambda: drain(Queue.invalid_name(pid, "default")), what="the dead letter")
    [(body, headers, message_id)] = invalid
    assert message_id == job.id
    assert roger.Job.decode(body).id == job.id
    assert headers["x-first-death-reason"] == "delivery_limit"
    assert headers["x-death"][0]["queue"] == work


def test_the_consumer_sets_aside_a_job_delivered_too_often_on_an_existing_queue(
    h: NodeHarness,
) -> None:
    """A work queue declared before, without our arguments (no limit, no
    dead-letter target: PRECONDITION_FAILED when declared again), is used as
    it is, and the Consumer sets aside a job that was delivered
    ``delivery_limit`` times without an outcome instead of running it."""
    h.start(delivery_limit=3)
    pid = h.partition_id()
    work = Queue.make_name(pid, "default")
    _declare(work, {"x-queue-type": "quorum"})
    job = h.enqueue(TimedJob, pid, "poison", 0)
    assert _return_until_gone(work, 3) == [0, 1, 2]  # three deliveries

    assert roger.Partition.start(pid, {"default": 1}) == "running"

    invalid = wait_for(lambda: drain(Queue.invalid_name(pid, "default")), what="set aside")
    [(body, headers, message_id)] = invalid
    assert message_id == job.id and roger.Job.decode(body).id == job.id
    assert headers["x-roger-invalid"].startswith("Delivered 3 times without an outcome")
    holds_for(lambda: not h.events("start"), 1.0, "the job never runs")
    assert counts(work) == (0, 1)


def test_pausing_and_resuming_never_counts_toward_the_delivery_limit(
    h: NodeHarness, tmp_path: Path
) -> None:
    """A paused queue's deliveries go back as fresh copies: paused and resumed
    four times, a job waiting in the Consumer survives a queue whose
    ``x-delivery-limit`` is 2 with no dead-letter target (what RabbitMQ 4.x
    does with its default limit of 20: drop the message)."""
    h.start()
    pid = h.partition_id()
    work = Queue.make_name(pid, "default")
    _declare(work, {"x-queue-type": "quorum", "x-delivery-limit": 2})
    assert roger.Partition.start(pid, {"default": 1}) == "running"
    gate = tmp_path / "gate"
    h.enqueue(GateJob, pid, "blocker", str(gate))
    h.wait_tags("start", {"blocker"})
    h.enqueue(TimedJob, pid, "waiting", 0)
    wait_for(lambda: counts(work) == (0, 1), what="the second job in the Consumer")

    for cycle in range(4):
        roger.Consumer.pause(pid, "default")
        # A cancelled quorum queue consumer is still counted while the
        # blocker's delivery is unacked: look at the ready count only.
        wait_for(lambda: _ready(work) == 1, what=f"the job given back (pause {cycle})")
        roger.Consumer.resume(pid, "default")
        wait_for(lambda: _ready(work) == 0, what=f"the job taken again (resume {cycle})")

    gate.touch()
    h.wait_tags("after_run", {"blocker", "waiting"})
    assert [e["tag"] for e in h.events("start")].count("waiting") == 1
    assert drain(Queue.invalid_name(pid, "default")) == []
