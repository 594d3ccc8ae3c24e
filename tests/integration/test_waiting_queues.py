"""A job waiting for an execution key is handed over also when no node of
the cluster remembers parking it (issue 11, items 5 and 6).

A Consumer sweeps the waiting queues of the keys it parked jobs for, and each
sweep is a use of the queue, so a queue with jobs never expires while a node
runs the partition. A node that parked a job and restarted has forgotten it:
every Consumer now learns the held execution keys from Global's snapshot and
sweeps their waiting queues too. One real node and RabbitMQ.
"""

from __future__ import annotations

import asyncio

import roger_actors as roger
from roger_actors import node as roger_node
from roger_actors.node.facades import _global_request
from roger_actors.partition.consumer import Status
from roger_actors.partition.execution_keys import (
    ORIGIN_HEADER,
    WAITING_QUEUE_ARGS,
    waiting_queue_name,
)
from supervision import CallTimeout, NoProc
from tests.partition_harness import NodeHarness, _with_channel, counts, publish_raw, wait_for
from tests.procs import sigkill
from tests.roger_test_jobs2 import TimedJob


def test_a_parked_job_nobody_remembers_is_handed_over_once_its_key_is_free(
    h: NodeHarness,
) -> None:
    h.start()
    pid = h.start_partition({"default": 1})
    node = roger_node.current()

    def global_op(op: str, *args: object) -> object:
        return _global_request(node.publisher, pid, op, list(args))

    # A job of another node holds the key; a job waits for it in the key's
    # waiting queue, parked by a node that has since forgotten it.
    assert global_op("acquire_execution", "shared-key", "holder-elsewhere") is True
    waiting = roger.Job.create(TimedJob, [h.journal, "waiting", 0])
    queue = waiting_queue_name(pid, "shared-key")

    async def declare(channel: object) -> None:
        await channel.queue_declare(queue, durable=True, arguments=WAITING_QUEUE_ARGS)  # type: ignore[attr-defined]

    asyncio.run(_with_channel(declare))
    publish_raw(
        queue,
        waiting.encode(),
        headers={ORIGIN_HEADER: "default"},
        message_id=waiting.id,
    )
    # This node's Consumer starts again (it parked nothing).
    consumer = node.consumer_call(pid, Status(), timeout=5)["pid"]
    sigkill(consumer)

    def restarted() -> bool:
        try:
            return node.consumer_call(pid, Status(), timeout=2)["pid"] != consumer
        except (roger.NotRunningError, CallTimeout, NoProc):
            return False

    # 60 s: a SIGKILLed Consumer has been seen to take over 20 s to come
    # back now and then (under investigation; see the session notes).
    wait_for(restarted, 60.0, what="the Consumer started again")
    # It has learned the held key from Global's snapshot (a release before
    # that would free the key with nobody sweeping its waiting queue).
    wait_for(
        lambda: "shared-key" in node.consumer_call(pid, Status(), timeout=2)["swept_keys"],
        what="the Consumer sweeps the key's waiting queue",
    )
    assert counts(queue) == (1, 0), "the job is not waiting"
    assert not h.events("start")
    assert global_op("release_execution", "shared-key", "holder-elsewhere", None) is not None
    h.wait_tags("after_run", {"waiting"})
