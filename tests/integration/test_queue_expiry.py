"""No queue expiry drops a job (reliability issue, item 5.3).

RabbitMQ deletes a queue unused for its ``x-expires`` together with its
messages. Each queue of ours that expires must therefore lose every message
first: retry queues and lease holding queues hold a message at most its TTL
after a use of the queue (a touch before the publish, or a renewal's
basic.get), and expire only twice that TTL and ten minutes after the last use:
RabbitMQ's dead-letter worker tries a failed dead-lettering again only every
two minutes, and the message must still be there then.
"""

from __future__ import annotations

import asyncio
import uuid

import aiormq
import pytest

from roger_actors.partition import lease, retry
from roger_actors.transport.amqp import AmqpLink, properties
from roger_actors.transport.base import Properties
from roger_actors.transport.tables import to_spec
from tests.partition_harness import BROKER, counts, delete_queues, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("level", [1, 5, 60, 1800, 86400])
def test_a_retry_queue_expires_long_after_its_messages_left(level: int) -> None:
    _, args = retry.retry_queue("tp", "default", level)
    assert args["x-message-ttl"] == level * 1000
    assert args["x-expires"] >= 2 * args["x-message-ttl"] + 10 * 60_000


@pytest.mark.parametrize("timeout", [2, 5, 120, 1800, 10**6])
def test_a_holding_queue_expires_long_after_its_copy(timeout: float) -> None:
    ttl = lease.lease_ttl(timeout)
    args = lease.holding_queue_arguments("tp-default", ttl)
    assert args["x-expires"] >= 2 * ttl * 1000 + 10 * 60_000
    # Renewals (each a use of the queue) come four times per TTL.
    assert lease.RENEW_FRACTION * ttl < ttl


def test_a_touched_quorum_queue_outlives_its_expiry_while_in_use() -> None:
    """A quorum queue counts only consumers and basic.get as uses: a retry
    queue fed by publishes alone expired its x-expires after its creation,
    with the jobs it held. ``AmqpLink.touch`` is a use: a queue touched more
    often than its x-expires stays, however long it is in use."""
    tag = uuid.uuid4().hex[:10]
    work = f"texpiry-{tag}-default"
    name = f"{work}.retry.1"
    arguments = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": work,
        "x-message-ttl": 200,
        "x-expires": 2000,
        **retry.AT_LEAST_ONCE_DEAD_LETTERING,
    }

    async def run() -> list[bool]:
        link = AmqpLink(BROKER + "?name=roger-test-touch", lambda event: None)
        await link.connect()
        seen = []
        try:
            await link.declare(work)
            await link.declare_replicated(name, arguments)
            for i in range(32):  # 8 s of use, four times the queue's x-expires
                await link.touch(name)
                await link.publish(name, b"job %d" % i, properties(message_id=str(i)))
                await asyncio.sleep(0.25)  # the pace of the use under test
                seen.append(await link.counts(name) is not None)
            return seen
        finally:
            await link.close()

    try:
        assert all(asyncio.run(run()))
        # Every job went through the retry queue back to the work queue.
        wait_for(lambda: (counts(work) or (0, 0))[0] == 32, what="32 jobs back in the work queue")
    finally:
        delete_queues([work, name])


def test_retry_queues_are_touched_well_within_their_expiry() -> None:
    _, args = retry.retry_queue("tp", "default", 1)
    assert retry.TOUCH_SECONDS * 1000 * 4 < args["x-expires"]


def test_a_lease_copy_expires_back_into_its_work_queue() -> None:
    """A copy left in a holding queue (its node died) goes back to the work
    queue when its TTL is over; it is never dropped."""
    tag = uuid.uuid4().hex[:10]
    work = f"texpiry-{tag}-default"
    holding = work + lease.LEASE_POSTFIX + "0" * lease.LEASE_ID_HEX

    async def run() -> None:
        connection = await aiormq.connect(BROKER + "?name=roger-test-expiry")
        try:
            channel = await connection.channel()
            await channel.queue_declare(work, durable=True)
            # As the Consumer declares it: a quorum queue with at-least-once
            # dead-lettering (classic queues refuse that strategy).
            arguments = {**lease.holding_queue_arguments(work, 1.0), "x-queue-type": "quorum"}
            await channel.queue_declare(holding, durable=True, arguments=arguments)
            props = to_spec(lease.copy_properties(None, {"x-roger-deliveries": 1}, 1000))
            await channel.basic_publish(b"job", routing_key=holding, properties=props)
        finally:
            await connection.close()

    try:
        asyncio.run(run())
        wait_for(lambda: counts(work) == (1, 0), what="the copy back in the work queue")
        assert counts(holding) == (0, 0)
    finally:
        delete_queues([work, holding])


def test_failed_deliveries_reads_untrusted_headers() -> None:
    assert lease.failed_deliveries({}) == 0
    assert lease.failed_deliveries({"x-delivery-count": 3, "x-roger-deliveries": 2}) == 5
    assert lease.failed_deliveries({"x-delivery-count": True, "x-roger-deliveries": "9"}) == 0
    assert lease.failed_deliveries({"x-roger-deliveries": -4}) == 0
    headers = lease.copy_headers({"x-delivery-count": 2, "a": 1}, extra_failures=1)
    assert headers == {"a": 1, "x-roger-deliveries": 3}
    copied = lease.copy_properties(Properties(user_id="guest", expiration="5"), {"a": 1})
    assert copied == Properties(headers={"a": 1}, delivery_mode=2, expiration="5")
